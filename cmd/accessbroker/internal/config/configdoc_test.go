package config

import (
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var updateDocs = flag.Bool("update-docs", false, "rewrite docs/configuration.md from config.go's doc comments")

// TestConfigReferenceIsComplete renders the configuration reference from the doc comments
// on config.go's fields and compares it with docs/configuration.md: a key without a doc
// comment, or a reference that drifted from the code, fails. Run with -update-docs to
// rewrite the file.
func TestConfigReferenceIsComplete(t *testing.T) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "config.go", nil, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]*ast.StructType{}
	typeDocs := map[string]string{}
	for _, d := range f.Decls {
		gd, ok := d.(*ast.GenDecl)
		if !ok || gd.Tok != token.TYPE {
			continue
		}
		for _, s := range gd.Specs {
			ts := s.(*ast.TypeSpec)
			if st, ok := ts.Type.(*ast.StructType); ok {
				types[ts.Name.Name] = st
				typeDocs[ts.Name.Name] = gd.Doc.Text()
			}
		}
	}
	var b strings.Builder
	b.WriteString("# Configuration reference\n\n")
	b.WriteString("Generated from the doc comments in `cmd/accessbroker/internal/config/config.go` by\n")
	b.WriteString("`go test ./cmd/accessbroker/internal/config -run TestConfigReferenceIsComplete -update-docs`; a test fails when\n")
	b.WriteString("a key has no documentation or this page is out of date. `${NAME}` in any value is replaced by\n")
	b.WriteString("that environment variable; a secret may also be given as `file:/path`.\n\n")
	b.WriteString("| key | type | description |\n| --- | --- | --- |\n")
	var missing []string
	var walk func(typeName, prefix string)
	walk = func(typeName, prefix string) {
		st, ok := types[typeName]
		if !ok {
			return
		}
		for _, field := range st.Fields.List {
			if field.Tag == nil || len(field.Names) == 0 {
				continue
			}
			tag := reflect.StructTag(strings.Trim(field.Tag.Value, "`")).Get("yaml")
			name, _, _ := strings.Cut(tag, ",")
			if name == "" || name == "-" {
				continue
			}
			key := prefix + name
			doc := strings.Join(strings.Fields(field.Doc.Text()), " ")
			if doc == "" {
				missing = append(missing, key)
			}
			typ, elem := typeString(field.Type)
			fmt.Fprintf(&b, "| `%s` | %s | %s |\n", key, typ, strings.ReplaceAll(doc, "|", "\\|"))
			if _, isStruct := types[elem]; isStruct {
				sep := "."
				if strings.HasPrefix(typ, "list") {
					sep = "[]."
				}
				walk(elem, key+sep)
			}
		}
	}
	walk("Config", "")
	if len(missing) > 0 {
		t.Errorf("configuration keys without a doc comment in config.go: %s", strings.Join(missing, ", "))
	}
	path := filepath.Join("..", "..", "..", "..", "docs", "configuration.md")
	if *updateDocs {
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	have, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update-docs to create it)", err)
	}
	if string(have) != b.String() {
		t.Errorf("docs/configuration.md is out of date with config.go; run: go test ./cmd/accessbroker/internal/config -run TestConfigReferenceIsComplete -update-docs")
	}
}

// typeString describes a field's type for the reference and returns the named type inside.
func typeString(e ast.Expr) (desc, elem string) {
	switch x := e.(type) {
	case *ast.StarExpr:
		return typeString(x.X)
	case *ast.ArrayType:
		d, el := typeString(x.Elt)
		return "list of " + d, el
	case *ast.Ident:
		switch x.Name {
		case "string":
			return "string", x.Name
		case "int":
			return "integer", x.Name
		case "bool":
			return "boolean", x.Name
		case "Secret":
			return "secret", x.Name
		}
		return "section", x.Name
	case *ast.SelectorExpr:
		if x.Sel.Name == "Duration" {
			return "duration", ""
		}
		return x.Sel.Name, ""
	}
	return "value", ""
}
