package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"
	"text/tabwriter"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
)

// The usage texts of the audit sub-commands.
const (
	auditKeygenUsage = "usage: accessbroker audit keygen --out FILE\n\n" +
		"Writes a new ed25519 checkpoint signing key to FILE (mode 0600, never overwritten) and its public key to FILE.pub."
	auditVerifyUsage = "usage: accessbroker audit verify --config FILE [--public-key FILE] [--retired-key FILE]... [--witness PATH|URL]... [--format text|json]\n\n" +
		"Recomputes the hash chain and checks the signed checkpoints: exit 0 when intact, 1 naming the first bad seq."
	auditSearchUsage = "usage: accessbroker audit search --config FILE [--actor A] [--resource R] [--action A] [--grant G] [--request R] [--since T] [--until T] [--limit N] [--format table|json|csv] [--raw]"
	auditExportUsage = "usage: accessbroker audit export --config FILE [filters] [--format jsonl|csv|ocsf] [--raw]\n\n" +
		"Streams every matching event in seq order (ocsf: one OCSF 1.3.0 event per line, docs/audit.md)."
)

func runAudit(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return dispatch(ctx, "audit", []string{"verify", "search", "export", "keygen", "clear-suspect"}, map[string]func(context.Context, []string, io.Writer, io.Writer) int{
		"verify":        auditVerify,
		"clear-suspect": auditClearSuspect,
		"search": func(ctx context.Context, args []string, stdout, stderr io.Writer) int {
			return auditSearch(ctx, args, stdout, stderr, false)
		},
		"export": func(ctx context.Context, args []string, stdout, stderr io.Writer) int {
			return auditSearch(ctx, args, stdout, stderr, true)
		},
		"keygen": func(_ context.Context, args []string, stdout, stderr io.Writer) int {
			return auditKeygen(args, stdout, stderr)
		},
	}, args, stdout, stderr)
}

func auditKeygen(args []string, stdout, stderr io.Writer) int {
	fs := newCLI("audit keygen", auditKeygenUsage, stdout, stderr)
	out := fs.String("out", "", "where to write the new ed25519 private key (PEM); refuses to overwrite")
	if code, ok := fs.parseNone(args); !ok {
		return code
	}
	if *out == "" {
		fmt.Fprintln(stderr, firstUsageLine(auditKeygenUsage))
		return exitUsage
	}
	pubPath := *out + ".pub"
	if _, err := os.Lstat(pubPath); err == nil {
		fmt.Fprintf(stderr, "accessbroker audit keygen: %s already exists (an existing key is never overwritten); move it away or pick another --out\n", pubPath)
		return exitFailure
	}
	key, err := audit.GenerateKey(rand.Reader)
	if err != nil {
		fmt.Fprintf(stderr, "accessbroker audit keygen: %v\n", err)
		return exitFailure
	}
	pemBytes, err := audit.MarshalPrivateKey(key)
	if err != nil {
		fmt.Fprintf(stderr, "accessbroker audit keygen: %v\n", err)
		return exitFailure
	}
	pub, err := audit.MarshalPublicKey(audit.PublicKeyOf(key))
	if err != nil {
		fmt.Fprintf(stderr, "accessbroker audit keygen: %v\n", err)
		return exitFailure
	}
	if err := writeNewFile(*out, pemBytes, 0o600); err != nil {
		fmt.Fprintf(stderr, "accessbroker audit keygen: %v (an existing key is never overwritten)\n", err)
		return exitFailure
	}
	// The public key is not secret: auditors verify with it (audit verify --public-key).
	if err := writeNewFile(pubPath, pub, 0o644); err != nil {
		fmt.Fprintf(stderr, "accessbroker audit keygen: wrote %s, but not its public key: %v\n", *out, err)
		return exitFailure
	}
	fmt.Fprintf(stdout, "wrote %s (key id %s) and its public key %s:\n%s", *out, audit.KeyID(audit.PublicKeyOf(key)), pubPath, pub)
	return exitOK
}

// writeNewFile writes b to a file that must not exist yet, with mode perm.
func writeNewFile(path string, b []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// verifyGCPercent is the garbage collector's pace (GOGC) while audit verify reads the log
// (docs/performance.md: for 1M events 1.50-1.54 s of user CPU against 1.69-1.79 s at 100,
// peak RSS 257-317 MiB against 146-165 MiB).
const verifyGCPercent = 400

func auditVerify(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newCLI("audit verify", auditVerifyUsage, stdout, stderr).withLogLevel()
	configPath := fs.String("config", "", "configuration file")
	pubPath := fs.String("public-key", "", "verify checkpoints with this PEM public key instead of the config's signing key")
	maxAge := fs.Duration("max-checkpoint-age", 0, "fail if the newest checkpoint is older than this (default: twice audit.checkpoint_period)")
	format := fs.String("format", "text", "text or json")
	var retired []ed25519.PublicKey
	var witnessSpecs []string
	fs.Func("witness", "also check the log against the checkpoints a witness holds: a file path or an https:// URL (repeatable); fails when the log is behind one of them", func(s string) error {
		if strings.TrimSpace(s) == "" {
			return errors.New("want a file path or an https:// URL")
		}
		witnessSpecs = append(witnessSpecs, s)
		return nil
	})
	fs.Func("retired-key", "a PEM public key that signed older checkpoints before a key rotation (repeatable)", func(path string) error {
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		k, err := audit.ParsePublicKey(b)
		if err != nil {
			return err
		}
		retired = append(retired, k)
		return nil
	})
	if code, ok := fs.parseNone(args); !ok {
		return code
	}
	if *format != "text" && *format != "json" {
		return fs.usageError("--format %q: want text or json", *format)
	}
	cfg, ok := loadConfigFlag(*configPath, stderr)
	if !ok {
		return exitUsage
	}
	var pub []byte
	if *pubPath != "" {
		b, err := os.ReadFile(*pubPath)
		if err != nil {
			fmt.Fprintf(stderr, "accessbroker audit verify: %v\n", err)
			return exitUsage
		}
		p, err := audit.ParsePublicKey(b)
		if err != nil {
			fmt.Fprintf(stderr, "accessbroker audit verify: --public-key: %v\n", err)
			return exitUsage
		}
		pub = p
	} else {
		key, err := readSigningKey(cfg.Audit.SigningKeyFile)
		if err != nil {
			fmt.Fprintf(stderr, "accessbroker audit verify: %v\n", err)
			return exitUsage
		}
		pub = audit.PublicKeyOf(key)
	}
	a, err := newApp(ctx, cfg, fs.appOptions(appOptions{}))
	if err != nil {
		fmt.Fprintf(stderr, "accessbroker audit verify: %v\n", err)
		return exitFailure
	}
	defer a.Close()
	age := *maxAge
	if age == 0 {
		age = 2 * cfg.Audit.CheckpointPeriod
	}
	var ws []grants.Witness
	for _, spec := range witnessSpecs {
		w, err := witnessFlag(ctx, cfg, spec, a.clock)
		if err != nil {
			fmt.Fprintf(stderr, "accessbroker audit verify: %v\n", err)
			return exitUsage
		}
		ws = append(ws, w)
	}
	witnessed, counts, err := readWitnesses(ctx, ws, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "accessbroker audit verify: %v\n", err)
		return exitFailure
	}
	// Verify reads every event once and keeps none: what it reads is garbage at once, and at
	// Go's default pace the collector runs every few megabytes read, over a live heap of the
	// pages in flight. A slower pace costs memory for the read's length (about 120 MiB more
	// at its peak for 1M events) and saves about a tenth of the command's CPU. GOGC set in
	// the environment is the operator's and is kept.
	if os.Getenv("GOGC") == "" {
		defer debug.SetGCPercent(debug.SetGCPercent(verifyGCPercent))
	}
	res, err := audit.Verify(ctx, a.store, pub, audit.VerifyOptions{
		RequireCheckpoint: true, CheckpointEvery: int64(cfg.Audit.CheckpointEvery), MaxCheckpointAge: age, Now: a.clock.Now(),
		RetiredKeys: retired, Witnessed: witnessed,
	})
	if err != nil {
		fmt.Fprintf(stderr, "accessbroker audit verify: %v\n", err)
		return exitFailure
	}
	if *format == "json" {
		out := map[string]any{
			"ok": res.OK, "events": res.Events, "last_seq": res.LastSeq, "head": res.Head, "checkpoints": res.Checkpoints,
			"first_bad": res.FirstBad, "damage": res.Damage, "detail": res.Detail,
		}
		if len(ws) > 0 {
			out["witnessed"] = res.Witnessed
			wj := []map[string]any{}
			for i, w := range ws {
				wj = append(wj, map[string]any{"witness": w.Name(), "checkpoints": counts[i]})
			}
			out["witnesses"] = wj
		}
		_ = json.NewEncoder(stdout).Encode(out)
	} else {
		fmt.Fprintln(stdout, res.String())
		for i, w := range ws {
			fmt.Fprintf(stdout, "witness %s: %d checkpoints read\n", w.Name(), counts[i])
		}
	}
	if !res.OK {
		return exitFailure
	}
	return exitOK
}

func auditSearch(ctx context.Context, args []string, stdout, stderr io.Writer, export bool) int {
	name := "audit search"
	if export {
		name = "audit export"
	}
	usage := auditSearchUsage
	if export {
		usage = auditExportUsage
	}
	fs := newCLI(name, usage, stdout, stderr).withLogLevel()
	configPath := fs.String("config", "", "configuration file")
	var q audit.Query
	var since, until, action string
	fs.StringVar(&q.Actor, "actor", "", "actor id or email")
	fs.StringVar(&q.Resource, "resource", "", "resource name")
	fs.StringVar(&action, "action", "", "action, e.g. grant.revoked")
	fs.StringVar(&q.GrantID, "grant", "", "grant id")
	fs.StringVar(&q.RequestID, "request", "", "request id")
	fs.StringVar(&since, "since", "", "from this time (RFC 3339) or this long ago (e.g. 168h)")
	fs.StringVar(&until, "until", "", "before this time (RFC 3339) or this long ago")
	limit := fs.Int("limit", 100, "at most this many events (search only; export writes all)")
	defFormat := "table"
	if export {
		defFormat = "jsonl"
	}
	format := fs.String("format", defFormat, "search: table, json or csv; export: jsonl, csv or ocsf")
	raw := fs.Bool("raw", false, rawFlagUsage)
	if code, ok := fs.parseNone(args); !ok {
		return code
	}
	valid := map[string]bool{"table": !export, "json": !export, "csv": true, "jsonl": export, "ocsf": export}
	if !valid[*format] {
		fmt.Fprintf(stderr, "accessbroker %s: --format %q is not supported\n", name, *format)
		return exitUsage
	}
	if !rawNeedsCSV(name, *raw, *format, stderr) {
		return exitUsage
	}
	writeCSV := audit.WriteCSV
	if *raw {
		writeCSV = audit.WriteCSVRaw
	}
	cfg, ok := loadConfigFlag(*configPath, stderr)
	if !ok {
		return exitUsage
	}
	a, err := newApp(ctx, cfg, fs.appOptions(appOptions{}))
	if err != nil {
		fmt.Fprintf(stderr, "accessbroker %s: %v\n", name, err)
		return exitFailure
	}
	defer a.Close()
	now := a.clock.Now()
	if q.Since, err = audit.ParseWhen(since, now); err != nil {
		fmt.Fprintf(stderr, "accessbroker %s: --since: %v\n", name, err)
		return exitUsage
	}
	if q.Until, err = audit.ParseWhen(until, now); err != nil {
		fmt.Fprintf(stderr, "accessbroker %s: --until: %v\n", name, err)
		return exitUsage
	}
	q.Action = audit.Action(action)
	if export {
		return auditExport(ctx, a, q, *format, writeCSV, stdout, stderr)
	}
	q.Limit = *limit
	if err := q.Validate(); err != nil {
		fmt.Fprintf(stderr, "accessbroker %s: %v\n", name, err)
		return exitUsage
	}
	evs, err := a.store.Search(ctx, q)
	if err != nil {
		fmt.Fprintf(stderr, "accessbroker %s: %v\n", name, err)
		return exitFailure
	}
	switch *format {
	case "json":
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if evs == nil {
			evs = []audit.Event{}
		}
		err = enc.Encode(evs)
	case "csv":
		err = writeCSV(stdout, evs, true)
	default:
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SEQ\tTIME (UTC)\tACTOR\tACTION\tRESOURCE\tGRANT\tREASON")
		for _, e := range evs {
			actor := e.Actor.ID
			if e.Actor.Email != "" {
				actor += " <" + e.Actor.Email + ">"
			}
			fmt.Fprintf(tw, "%d\t%s\t%s:%s\t%s\t%s\t%s\t%s\n", e.Seq, audit.FormatTime(e.Time), e.Actor.Kind, actor, e.Action, e.Resource, e.GrantID, firstLine(e.Reason, 60))
		}
		err = tw.Flush()
	}
	if err != nil {
		fmt.Fprintf(stderr, "accessbroker %s: %v\n", name, err)
		return exitFailure
	}
	return exitOK
}

// rawFlagUsage is the --raw flag of every command that writes CSV.
const rawFlagUsage = "with --format csv: write every cell exactly; by default a cell starting with = + - @, tab, CR or NUL gets a leading ' so spreadsheets do not run it as a formula"

// rawNeedsCSV reports whether --raw fits the format; if not it says so on stderr (the caller
// exits 2).
func rawNeedsCSV(name string, raw bool, format string, stderr io.Writer) bool {
	if raw && format != "csv" {
		fmt.Fprintf(stderr, "accessbroker %s: --raw applies only to --format csv (it turns off the defusing of spreadsheet formulas), not to --format %s; drop --raw or use --format csv\n", name, format)
		return false
	}
	return true
}

// auditExport streams every matching event in pages, in seq order; CSV pages are written
// with writeCSV.
func auditExport(ctx context.Context, a *app, q audit.Query, format string, writeCSV func(io.Writer, []audit.Event, bool) error, stdout, stderr io.Writer) int {
	q.Limit = 5000
	header := true
	for {
		evs, err := a.store.Search(ctx, q)
		if err != nil {
			fmt.Fprintf(stderr, "accessbroker audit export: %v\n", err)
			return exitFailure
		}
		switch format {
		case "csv":
			err = writeCSV(stdout, evs, header)
			header = false
		case "ocsf":
			err = audit.WriteOCSF(stdout, evs)
		default:
			err = audit.WriteJSONL(stdout, evs)
		}
		if err != nil {
			fmt.Fprintf(stderr, "accessbroker audit export: %v\n", err)
			return exitFailure
		}
		if len(evs) < q.Limit {
			return exitOK
		}
		q.AfterSeq = evs[len(evs)-1].Seq
	}
}
