package audit

import (
	"go/ast"
	"go/constant"
	"go/parser"
	"go/token"
	"slices"
	"strconv"
	"testing"
)

// TestReportEvidenceKeysCoverTheBuilder reads the report builder's source: every evidence
// key it reads from an event as it is added (ev[…] or e.Evidence[…]) must be one that
// ReportEvidenceKeys names for some action, so that a store leaving other keys out
// (ReportScanner) cannot change a report. Keys read later from the kept whole evidence of
// grant.issuing and oncall.checked (g.evidence, req.onCall) need no listing.
func TestReportEvidenceKeysCoverTheBuilder(t *testing.T) {
	listed := map[string]bool{}
	for _, a := range []Action{ActionSessionStatement, ActionSessionStarted, ActionSessionEnded, ActionSessionLoginFailed,
		ActionAWSActivity, ActionGitHubActivity, ActionRequestCreated, ActionRequestRejected, ActionRequestApproved,
		ActionRequestExpired, ActionRequestDenied, ActionApprovalRecorded, ActionGrantIssued, ActionGrantExtended,
		ActionGrantRevokeQueued, ActionGrantRevoked} {
		keys, _ := ReportEvidenceKeys(a)
		for _, k := range keys {
			listed[k] = true
		}
	}
	consts := map[string]string{"EvidenceRefusedClick": EvidenceRefusedClick, "EvidenceActivityReadOnly": EvidenceActivityReadOnly,
		"EvidenceActivityErrorCode": EvidenceActivityErrorCode, "EvidenceActivityAfterRevocation": EvidenceActivityAfterRevocation,
		"EvidenceActivityEventTime": EvidenceActivityEventTime}
	fset := token.NewFileSet()
	var read []string
	for _, file := range []string{"report_build.go", "report_rules.go", "report_activity.go", "report.go"} {
		f, err := parser.ParseFile(fset, file, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		// The functions that see each event as it is added; the others read only what
		// they kept (g.evidence and req.onCall: the whole evidence of grant.issuing and
		// oncall.checked).
		perEvent := []string{"add", "addSessionEvent", "addActivityEvent", "addRequestEvent", "refused"}
		ast.Inspect(f, func(n ast.Node) bool {
			if fd, ok := n.(*ast.FuncDecl); ok {
				return slices.Contains(perEvent, fd.Name.Name)
			}
			ix, ok := n.(*ast.IndexExpr)
			if !ok {
				return true
			}
			switch x := ix.X.(type) {
			case *ast.Ident:
				if x.Name != "ev" {
					return true
				}
			case *ast.SelectorExpr:
				if x.Sel.Name != "Evidence" {
					return true
				}
			default:
				return true
			}
			var key string
			switch k := ix.Index.(type) {
			case *ast.BasicLit:
				key = constant.StringVal(constant.MakeFromLiteral(k.Value, k.Kind, 0))
			case *ast.Ident:
				v, ok := consts[k.Name]
				if !ok {
					t.Errorf("%s: evidence read with key %s: add the constant to this test and the key to ReportEvidenceKeys", fset.Position(ix.Pos()), k.Name)
					return true
				}
				key = v
			default:
				t.Errorf("%s: evidence read with a computed key", fset.Position(ix.Pos()))
				return true
			}
			read = append(read, key)
			if !listed[key] {
				t.Errorf("%s: the report reads evidence key %s, which ReportEvidenceKeys does not name for any action", fset.Position(ix.Pos()), strconv.Quote(key))
			}
			return true
		})
	}
	if !slices.Contains(read, "sqlstate") || !slices.Contains(read, EvidenceActivityReadOnly) {
		t.Errorf("found the reads %q: the source walk misses the builder's evidence reads", read)
	}
}
