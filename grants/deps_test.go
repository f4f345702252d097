package grants_test

// The architecture, machine-checked. This file is the executable copy of DESIGN.md's
// "Packages" and "Dependencies point inward" and of STYLE.md §3.2 (layers, fixtures, *test
// packages), plus the rule that time comes from the injected clock (DESIGN.md invariant 8).
// It runs under plain `go test ./...`, so .ci/run enforces it without golangci-lint.
//
// When you add a package, give it a row in layers (the test fails until you do). When you
// need an exception, add it to the exception lists below with its reason; an exception that
// stops being used fails the test too, so the lists never outlive the code they excuse.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/accessbroker/accessbroker"

// layer says what the production (non-_test.go) files of the packages matching pkg may
// import. Rows are tried in order; the first match decides.
type layer struct {
	pkg string // package path relative to the module; "dir/*" matches one level below dir
	// ours are the accessbroker packages it may import ("..." = any of them).
	ours []string
	// libs are the non-standard-library import paths it may use ("x/..." = x and below;
	// "..." = any library). Empty: standard library only.
	libs []string
	why  string
}

var (
	anything = []string{"..."}
	goCmp    = []string{"github.com/google/go-cmp/..."}
)

// layers mirrors DESIGN.md ("Packages", "Dependencies point inward": cmd → integrations/* →
// broker → grants, audit) and STYLE.md §3.2.
var layers = []layer{
	{pkg: "audit", why: "audit is the leaf: events, canonical bytes, chain, checkpoints, verify; standard library only"},
	{pkg: "grants", ours: []string{"audit"}, why: "grants (lifecycle, Store and Provider contracts, revoker) uses only audit, for the events it hands the store; no SDK, no driver"},
	{pkg: "broker", ours: []string{"grants", "audit"}, libs: []string{"golang.org/x/text/..."},
		why: "broker (use cases) declares its ports and never imports an integration, an SDK or a driver (x/text: Unicode normalisation of emails for identity rules)"},
	{pkg: "grants/sqlstore", ours: []string{"grants", "audit"}, libs: []string{"github.com/jackc/pgx/v5/...", "modernc.org/sqlite/..."},
		why: "the store implements grants.Store with the audit chain; only its two drivers"},
	{pkg: "grants/clocktest", ours: []string{"grants"}, why: "the fake clock implements grants.Clock"},
	{pkg: "grants/storetest", ours: []string{"grants", "audit", "grants/clocktest"}, libs: goCmp, why: "the store conformance suite"},
	{pkg: "grants/providertest", ours: []string{"grants", "audit"}, libs: goCmp, why: "the provider conformance suite"},
	{pkg: "broker/brokertest", ours: []string{"broker", "grants", "audit"}, why: "in-memory fakes of broker's ports"},
	{pkg: "integrations/httpclient", ours: []string{"grants"}, libs: anything, why: "the one retrying HTTP client every integration shares"},
	// Checked today: adminapi uses grants and audit only; aws and pagerduty use httpclient;
	// no integration uses another one, and none needs to.
	{pkg: "integrations/*", ours: []string{"broker", "grants", "audit", "integrations/httpclient"}, libs: anything,
		why: "an integration adapts one technology to broker's or grants' interfaces and never imports another integration (only the shared integrations/httpclient)"},
	{pkg: "fixtures/awsfake", libs: []string{"github.com/aws/aws-sdk-go-v2/aws", "github.com/aws/aws-sdk-go-v2/aws/signer/v4"},
		why: "fakes import nothing of ours; awsfake borrows only the SDK's SigV4 signer (and its Credentials) to check signatures, never SDK structs to decode requests"},
	{pkg: "fixtures/slackfake", ours: []string{"fixtures/slack"},
		why: "fakes import nothing of ours but the payload examples: slackfake builds the requests Slack sends (slash commands, block_actions) from the documented ones in fixtures/slack"},
	{pkg: "fixtures/oidcfake", libs: []string{"github.com/go-jose/go-jose/v4/..."},
		why: "fakes import nothing of ours; oidcfake uses go-jose only to sign the ID tokens it issues and publish its key (JWKS), never to decode a client's request"},
	{pkg: "fixtures/*", why: "fakes and payloads import nothing of ours and no SDK: they decode with their own structs, so a wrong JSON tag cannot pass both sides"},
	{pkg: "cmd/accessbroker/internal/*", ours: anything, libs: anything, why: "cmd's own packages (config, demo): part of the wiring, imported only by cmd/accessbroker"},
	{pkg: "cmd/accessbroker", ours: anything, libs: anything, why: "cmd wires everything"},
	{pkg: "cmd/abbench", ours: anything, libs: anything, why: "the benchmark wires the real issue and revoke paths, like cmd, in a binary of its own"},
	{pkg: "cmd/abslack", ours: anything, libs: anything, why: "the Slack load generator runs the real accessbroker and the fakes of fixtures, like cmd, in a binary of its own"},
}

// bannedEverywhere are imports no production file may have, whatever its layer.
var bannedEverywhere = []struct{ path, why string }{
	{"github.com/sirupsen/logrus", "log with log/slog"},
	{"database/sql", "SQL belongs to grants/sqlstore, the integrations (the postgres provider) and cmd; everything else reaches data through grants.Store"},
}

// sqlAllowed are the packages allowed database/sql despite bannedEverywhere.
var sqlAllowed = []string{"grants/sqlstore", "integrations/*", "cmd/accessbroker"}

// onlyIn are libraries that exactly one of our packages may import.
var onlyIn = []struct{ lib, pkg, why string }{
	{"github.com/hashicorp/go-retryablehttp", "integrations/httpclient", "every SDK gets its retries from integrations/httpclient"},
	{"github.com/hashicorp/go-cleanhttp", "integrations/httpclient", "every SDK gets its transport from integrations/httpclient"},
}

// testPackageException is a production file's import of a *test package that is allowed for
// now: importer → imported, and why.
type testPackageException struct{ importer, imported, why string }

// testPackageExceptions are the allowed imports of *test packages by production code. None
// today: the demo runs on a simulated clock of its own (cmd/accessbroker/internal/demo).
var testPackageExceptions []testPackageException

// wallClockExceptions are the production files allowed to read the wall clock directly.
var wallClockExceptions = []struct{ file, why string }{
	{"grants/clock.go", "the clock itself: grants.RealClock"},
	{"fixtures/awsfake/server.go", "Options.Now defaults to time.Now when the caller passes no clock; fakes import nothing of ours, so no grants.Clock"},
	{"fixtures/pdfake/pdfake.go", "Options.Now defaults to time.Now when the caller passes no clock; fakes import nothing of ours, so no grants.Clock"},
	{"fixtures/oidcfake/oidcfake.go", "Options.Now defaults to time.Now when the caller passes no clock; fakes import nothing of ours, so no grants.Clock"},
	{"fixtures/slackfake/slackfake.go", "Options.Now defaults to time.Now when the caller passes no clock; fakes import nothing of ours, so no grants.Clock"},
}

// wallClockFuncs are the time functions that read the wall clock.
var wallClockFuncs = []string{"Now", "Since", "Until"}

// pkgInfo is the part of `go list -json` the checks read. Paths are relative to the module.
type pkgInfo struct {
	ImportPath     string
	Dir            string
	GoFiles        []string
	IgnoredGoFiles []string
	Imports        []string
}

// TestLayering fails when a production import breaks DESIGN.md's layering: an inward package
// importing an outer one, an integration importing another, a fixture importing our code or
// an SDK, a *test package or "testing" in production code, or a package with no row in layers.
func TestLayering(t *testing.T) {
	pkgs := listPackages(t)
	var used []string
	for _, p := range violations(pkgs, testPackageExceptions, &used) {
		t.Error(p)
	}
	for _, p := range unusedExceptions(testPackageExceptions, used) {
		t.Error(p)
	}
}

// unusedExceptions reports each exception that no import used.
func unusedExceptions(exceptions []testPackageException, used []string) []string {
	var out []string
	for _, e := range exceptions {
		if !slices.Contains(used, e.importer+" → "+e.imported) {
			out = append(out, fmt.Sprintf("testPackageExceptions: %s no longer imports %s; delete that line in grants/deps_test.go", e.importer, e.imported))
		}
	}
	return out
}

// TestBinaryLinksNoTestPackage fails when the accessbroker binary links a *test helper
// package of ours, or "testing", through any path of imports (TestLayering checks each
// package's own imports; this checks what the linker gets).
func TestBinaryLinksNoTestPackage(t *testing.T) {
	deps := listDeps(t, module+"/cmd/accessbroker")
	if !slices.Contains(deps, module+"/grants") {
		t.Fatalf("go list -deps found %d packages without %s/grants; is the test running inside the module?", len(deps), module)
	}
	if bad := testPackagesIn(deps); len(bad) > 0 {
		t.Errorf("the accessbroker binary links %s: *test packages and \"testing\" are for tests only (go list -deps ./cmd/accessbroker)", strings.Join(bad, ", "))
	}
}

// testPackagesIn returns the packages of deps that a production binary must not link: ours
// whose last element ends in "test", and "testing".
func testPackagesIn(deps []string) []string {
	var bad []string
	for _, d := range deps {
		ours := d == module || strings.HasPrefix(d, module+"/")
		if d == "testing" || ours && strings.HasSuffix(path.Base(d), "test") {
			bad = append(bad, d)
		}
	}
	return bad
}

// TestNoWallClock fails when production code reads the wall clock (time.Now, time.Since,
// time.Until) anywhere but in grants/clock.go and the listed exceptions: time comes from the
// injected grants.Clock, so tests can drive it (DESIGN.md invariant 8).
func TestNoWallClock(t *testing.T) {
	pkgs := listPackages(t)
	hits := map[string]bool{}
	for _, p := range pkgs {
		for _, name := range productionFiles(p) {
			rel := path.Join(relative(p.ImportPath), name)
			found, err := wallClockUses(filepath.Join(p.Dir, name), nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(found) == 0 {
				continue
			}
			if slices.ContainsFunc(wallClockExceptions, func(e struct{ file, why string }) bool { return e.file == rel }) {
				hits[rel] = true
				continue
			}
			for _, f := range found {
				t.Errorf("%s:%s reads the wall clock: take a grants.Clock and call its Now (only grants/clock.go may read the wall clock)", rel, f)
			}
		}
	}
	for _, e := range wallClockExceptions {
		if !hits[e.file] {
			t.Errorf("wallClockExceptions: %s no longer reads the wall clock (or is gone); delete its line in grants/deps_test.go", e.file)
		}
	}
}

// TestArchitectureChecksCatch feeds each rule a violation it must report, so a check that
// silently stopped matching (a typo in a pattern, a parser change) fails here.
func TestArchitectureChecksCatch(t *testing.T) {
	imports := func(pkg string, imps ...string) pkgInfo { return pkgInfo{ImportPath: pkg, Imports: imps} }
	for _, tc := range []struct {
		name string
		pkg  pkgInfo
		want string // "" = no violation
	}{
		{"broker imports an integration", imports("broker", module+"/integrations/slack"), "broker imports integrations/slack"},
		{"grants imports broker", imports("grants", module+"/broker"), "grants imports broker"},
		{"audit imports grants", imports("audit", module+"/grants"), "audit imports grants"},
		{"audit imports a library", imports("audit", "github.com/google/uuid"), "audit imports github.com/google/uuid"},
		{"grants imports an SDK", imports("grants", "github.com/slack-go/slack"), "grants imports github.com/slack-go/slack"},
		{"broker imports database/sql", imports("broker", "database/sql"), "broker imports database/sql"},
		{"integration imports integration", imports("integrations/adminapi", module+"/integrations/slack"), "integrations/adminapi imports integrations/slack"},
		{"integration imports httpclient", imports("integrations/github", module+"/integrations/httpclient", "github.com/google/go-github/v60/github"), ""},
		{"retryablehttp outside httpclient", imports("integrations/slack", "github.com/hashicorp/go-retryablehttp"), "only integrations/httpclient may"},
		{"fixture imports ours", imports("fixtures/slackfake", module+"/integrations/slack"), "fixtures/slackfake imports integrations/slack"},
		{"slackfake reads the payload examples", imports("fixtures/slackfake", module+"/fixtures/slack"), ""},
		{"slackfake imports another fake", imports("fixtures/slackfake", module+"/fixtures/pdfake"), "fixtures/slackfake imports fixtures/pdfake"},
		{"another fake imports the Slack examples", imports("fixtures/pdfake", module+"/fixtures/slack"), "fixtures/pdfake imports fixtures/slack"},
		{"fixture imports an SDK", imports("fixtures/pdfake", "github.com/PagerDuty/go-pagerduty"), "fixtures/pdfake imports github.com/PagerDuty/go-pagerduty"},
		{"awsfake's signer", imports("fixtures/awsfake", "github.com/aws/aws-sdk-go-v2/aws/signer/v4"), ""},
		{"awsfake decodes with SDK types", imports("fixtures/awsfake", "github.com/aws/aws-sdk-go-v2/service/sts/types"), "fixtures/awsfake imports github.com/aws/aws-sdk-go-v2/service/sts/types"},
		{"fixture imports testing", imports("fixtures/githubfake", "testing"), `fixtures/githubfake imports "testing"`},
		{"production imports a *test package", imports("integrations/slack", module+"/broker/brokertest"), "imports the test helper broker/brokertest"},
		{"cmd imports a *test package", imports("cmd/accessbroker", module+"/grants/storetest"), "imports the test helper grants/storetest"},
		{"cmd imports the fake clock", imports("cmd/accessbroker", module+"/grants/clocktest"), "imports the test helper grants/clocktest"},
		{"the demo imports the fake clock", imports("cmd/accessbroker/internal/demo", module+"/grants/clocktest"), "imports the test helper grants/clocktest"},
		{"a *test package may import testing", imports("grants/storetest", "testing", module+"/grants/clocktest"), ""},
		{"logrus", imports("cmd/accessbroker", "github.com/sirupsen/logrus"), "log with log/slog"},
		{"a package with no layer", imports("internal/util"), "has no row in layers"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.pkg.ImportPath = module + "/" + tc.pkg.ImportPath
			var used []string
			got := strings.Join(violations([]pkgInfo{tc.pkg}, nil, &used), "\n")
			if tc.want == "" && got != "" {
				t.Fatalf("want no violation, got:\n%s", got)
			}
			if !strings.Contains(got, tc.want) {
				t.Fatalf("want a violation saying %q, got:\n%s", tc.want, got)
			}
		})
	}

	// The exception mechanism, with a list of its own: a listed import passes and is marked
	// used, an unlisted one still fails, and a listed one nobody uses is reported.
	excs := []testPackageException{{"cmd/accessbroker", "grants/clocktest", "a test of the mechanism"}}
	var used []string
	listed := violations([]pkgInfo{imports(module+"/cmd/accessbroker", module+"/grants/clocktest")}, excs, &used)
	if len(listed) != 0 || !slices.Equal(used, []string{"cmd/accessbroker → grants/clocktest"}) {
		t.Errorf("a listed exception: violations %q, used %q; want none and the exception used", listed, used)
	}
	used = nil
	unlisted := violations([]pkgInfo{imports(module+"/cmd/accessbroker", module+"/grants/storetest")}, excs, &used)
	if len(unlisted) != 1 || !strings.Contains(unlisted[0], "imports the test helper grants/storetest") || len(used) != 0 {
		t.Errorf("an import the exceptions do not list: violations %q, used %q; want one violation", unlisted, used)
	}
	if got := unusedExceptions(excs, nil); len(got) != 1 || !strings.Contains(got[0], "cmd/accessbroker no longer imports grants/clocktest") {
		t.Errorf("an unused exception: %q, want it reported", got)
	}
	if got := unusedExceptions(excs, []string{"cmd/accessbroker → grants/clocktest"}); len(got) != 0 {
		t.Errorf("a used exception reported unused: %q", got)
	}

	// What the binary links.
	for _, tc := range []struct {
		name string
		deps []string
		want []string
	}{
		{"production and the standard library", []string{"fmt", "net/http/httptest", module + "/grants", module + "/fixtures/slackfake"}, nil},
		{"a *test package of ours", []string{"fmt", module + "/grants/clocktest", module + "/broker/brokertest"}, []string{module + "/grants/clocktest", module + "/broker/brokertest"}},
		{"testing", []string{"testing", "internal/testlog"}, []string{"testing"}},
	} {
		t.Run("binary/"+tc.name, func(t *testing.T) {
			if got := testPackagesIn(tc.deps); !slices.Equal(got, tc.want) {
				t.Errorf("testPackagesIn = %q, want %q", got, tc.want)
			}
		})
	}

	for _, tc := range []struct {
		name, src string
		want      int
	}{
		{"call", "package p\nimport \"time\"\nvar t = time.Now()", 1},
		{"method value", "package p\nimport \"time\"\nvar now = time.Now", 1},
		{"since and until", "package p\nimport \"time\"\nfunc f(t time.Time) { _ = time.Since(t); _ = time.Until(t) }", 2},
		{"inside a chain", "package p\nimport \"time\"\nfunc f(t time.Time) float64 { return time.Since(t).Seconds() }", 1},
		{"renamed import", "package p\nimport tm \"time\"\nvar t = tm.Now()", 1},
		{"dot import", "package p\nimport . \"time\"\nvar t = Now()", 1},
		{"a clock's Now", "package p\nimport \"time\"\ntype c struct{}\nfunc (c) Now() time.Time { return time.Time{} }\nvar t = c{}.Now()", 0},
		{"time.Second is no clock read", "package p\nimport \"time\"\nvar d = time.Second", 0},
		{"a local variable named time", "package p\nimport \"time\"\nvar d = time.Second\ntype x struct{ Now int }\nfunc f() { time := x{}; _ = time.Now }", 0},
	} {
		t.Run("wall clock/"+tc.name, func(t *testing.T) {
			found, err := wallClockUses("x.go", []byte(tc.src))
			if err != nil {
				t.Fatal(err)
			}
			if len(found) != tc.want {
				t.Fatalf("found %d uses %v, want %d", len(found), found, tc.want)
			}
		})
	}
}

// violations applies the layer table and the global bans to the production imports of pkgs.
// Every allowed use of a testPackageExceptions entry is appended to used ("importer → imported").
func violations(pkgs []pkgInfo, exceptions []testPackageException, used *[]string) []string {
	var out []string
	for _, p := range pkgs {
		rel := relative(p.ImportPath)
		l, ok := layerOf(rel)
		if !ok {
			out = append(out, fmt.Sprintf("%s has no row in layers (grants/deps_test.go): add one with the layer DESIGN.md gives it", rel))
			continue
		}
		helper := strings.HasSuffix(path.Base(rel), "test")
		for _, imp := range p.Imports {
			out = append(out, importViolations(rel, l, helper, imp, exceptions, used)...)
		}
	}
	return out
}

func importViolations(rel string, l layer, helper bool, imp string, exceptions []testPackageException, used *[]string) []string {
	var out []string
	for _, b := range bannedEverywhere {
		if imp == b.path && !(b.path == "database/sql" && matchesAny(rel, sqlAllowed)) {
			out = append(out, fmt.Sprintf("%s imports %s: %s", rel, imp, b.why))
		}
	}
	if imp == "testing" && !helper {
		out = append(out, fmt.Sprintf(`%s imports "testing" in a production file: only *test helper packages and _test.go files may (fixtures are linked into the binary by demo)`, rel))
	}
	if imp == module || strings.HasPrefix(imp, module+"/") {
		dep := relative(imp)
		if strings.HasSuffix(path.Base(dep), "test") {
			if slices.ContainsFunc(exceptions, func(e testPackageException) bool {
				return e.importer == rel && e.imported == dep
			}) {
				*used = append(*used, rel+" → "+dep)
				return out
			}
			if !helper {
				return append(out, fmt.Sprintf("%s imports the test helper %s in a production file: *test packages are for _test.go files only", rel, dep))
			}
		}
		if !matchesAny(dep, l.ours) {
			out = append(out, fmt.Sprintf("%s imports %s: it may import only %s of ours (%s)", rel, dep, list(l.ours), l.why))
		}
		return out
	}
	if standard(imp) {
		return out
	}
	for _, o := range onlyIn {
		if (imp == o.lib || strings.HasPrefix(imp, o.lib+"/")) && !match(o.pkg, rel) {
			out = append(out, fmt.Sprintf("%s imports %s: only %s may (%s)", rel, imp, o.pkg, o.why))
		}
	}
	if !matchesAny(imp, l.libs) {
		out = append(out, fmt.Sprintf("%s imports %s: it may use only %s outside the standard library (%s)", rel, imp, list(l.libs), l.why))
	}
	return out
}

func layerOf(rel string) (layer, bool) {
	for _, l := range layers {
		if match(l.pkg, rel) {
			return l, true
		}
	}
	return layer{}, false
}

// match reports whether p matches pattern: "..." matches anything, "x/..." matches x and
// everything below it, otherwise path.Match ("*" stays within one path element).
func match(pattern, p string) bool {
	if pattern == "..." {
		return true
	}
	if base, ok := strings.CutSuffix(pattern, "/..."); ok {
		return p == base || strings.HasPrefix(p, base+"/")
	}
	ok, err := path.Match(pattern, p)
	return err == nil && ok
}

func matchesAny(p string, patterns []string) bool {
	return slices.ContainsFunc(patterns, func(pat string) bool { return match(pat, p) })
}

func list(patterns []string) string {
	if len(patterns) == 0 {
		return "nothing"
	}
	return strings.Join(patterns, ", ")
}

func relative(importPath string) string {
	if importPath == module {
		return "."
	}
	return strings.TrimPrefix(importPath, module+"/")
}

// standard reports whether imp is a standard-library path: its first element has no dot.
func standard(imp string) bool {
	first, _, _ := strings.Cut(imp, "/")
	return !strings.Contains(first, ".")
}

// productionFiles are p's non-test Go files, whatever their build constraints.
func productionFiles(p pkgInfo) []string {
	var files []string
	for _, f := range append(slices.Clone(p.GoFiles), p.IgnoredGoFiles...) {
		if strings.HasSuffix(f, ".go") && !strings.HasSuffix(f, "_test.go") {
			files = append(files, f)
		}
	}
	return files
}

// wallClockUses returns the lines in the Go file (src, or read from filename when src is
// nil) where time.Now, time.Since or time.Until is referred to, called or not, through
// whatever name the file imports "time" as. A dot import of time counts as a use: it would
// hide the calls from this check.
func wallClockUses(filename string, src []byte) ([]string, error) {
	fset := token.NewFileSet()
	var from any
	if src != nil {
		from = src
	}
	// With object resolution, an identifier that names a local declaration has Obj set; a
	// package name never does. So a local variable called time is not mistaken for the package.
	f, err := parser.ParseFile(fset, filename, from, 0)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", filename, err)
	}
	var found []string
	name := ""
	for _, imp := range f.Imports {
		p, err := strconv.Unquote(imp.Path.Value)
		if err != nil || p != "time" {
			continue
		}
		switch {
		case imp.Name == nil:
			name = "time"
		case imp.Name.Name == ".":
			found = append(found, fmt.Sprintf("%d: a dot import of time (which hides time.Now from this check)", fset.Position(imp.Pos()).Line))
		default:
			name = imp.Name.Name
		}
	}
	if name == "" {
		return found, nil
	}
	ast.Inspect(f, func(n ast.Node) bool {
		if sel, ok := n.(*ast.SelectorExpr); ok {
			if x, ok := sel.X.(*ast.Ident); ok && x.Name == name && x.Obj == nil && slices.Contains(wallClockFuncs, sel.Sel.Name) {
				found = append(found, fmt.Sprintf("%d: %s.%s", fset.Position(sel.Pos()).Line, name, sel.Sel.Name))
			}
		}
		return true
	})
	return found, nil
}

// listDeps runs `go list -deps` on pkg: every package its binary links.
func listDeps(t *testing.T, pkg string) []string {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("the go command is not on PATH; the link set cannot be listed")
	}
	cmd := exec.Command("go", "list", "-deps", pkg)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v\n%s", pkg, err, stderr.String())
	}
	return strings.Fields(string(out))
}

// listPackages runs `go list -json` over the module once per test binary.
func listPackages(t *testing.T) []pkgInfo {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("the go command is not on PATH; the architecture cannot be checked")
	}
	cmd := exec.Command("go", "list", "-json=ImportPath,Dir,GoFiles,IgnoredGoFiles,Imports", module+"/...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %s/...: %v\n%s", module, err, stderr.String())
	}
	var pkgs []pkgInfo
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkgInfo
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decode go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 10 {
		t.Fatalf("go list found only %d packages of %s; is the test running inside the module?", len(pkgs), module)
	}
	return pkgs
}
