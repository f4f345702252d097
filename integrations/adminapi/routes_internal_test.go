package adminapi

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

// TestOpenAPIDescribesEveryRoute: openapi.json names exactly the operations the handler
// serves (method and path), and every path parameter the routes use.
func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openAPI, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi = %q", doc.OpenAPI)
	}
	var described []string
	for path, ops := range doc.Paths {
		for method := range ops {
			described = append(described, strings.ToUpper(method)+" "+path)
		}
	}
	served := []string{"GET /openapi.json"}
	for _, rt := range (&API{}).routes() {
		served = append(served, rt.method+" "+rt.path)
	}
	slices.Sort(described)
	slices.Sort(served)
	if !slices.Equal(described, served) {
		t.Fatalf("openapi.json describes\n  %s\nthe handler serves\n  %s", strings.Join(described, "\n  "), strings.Join(served, "\n  "))
	}
}
