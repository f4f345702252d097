package audit

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func sealedEvents(tb testing.TB, n int64) []Event {
	tb.Helper()
	return buildLog(tb, n, 0).Events
}

// checkGolden compares got with testdata/<name>, or rewrites it with -update.
func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs (-file +got):\n%s", path, diff)
	}
}

func TestWriteJSONL(t *testing.T) {
	t.Parallel()
	events := sealedEvents(t, 8)
	var buf bytes.Buffer
	if err := WriteJSONL(&buf, events); err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "export/events.jsonl", buf.Bytes())

	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != len(events) {
		t.Fatalf("%d lines for %d events", len(lines), len(events))
	}
	// Each line decoded generically: every field present, times in the contract format.
	var first map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"seq", "id", "time", "actor", "action", "prev_hash", "hash", "evidence", "reason"} {
		if _, ok := first[k]; !ok {
			t.Errorf("line 1 lacks %q: %s", k, lines[0])
		}
	}
	if first["time"] != "2026-11-22T10:00:37.007Z" || first["prev_hash"] != Genesis.String() || first["hash"] != events[0].Hash.String() {
		t.Errorf("line 1 = %s", lines[0])
	}

	back, err := ReadJSONL(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(events, back); diff != "" {
		t.Errorf("JSONL round trip (-want +got):\n%s", diff)
	}
	res, err := Verify(t.Context(), &MemLog{Events: back}, PublicKeyOf(testKey()), VerifyOptions{})
	if err != nil || !res.OK || res.Events != 8 {
		t.Errorf("exported log does not verify: %v %s", err, res)
	}
}

func TestReadJSONLErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, wantErr string
	}{
		{"not JSON", "{\"seq\":1}\nnope\n", "line 2"},
		{"bad hash", `{"seq":1,"hash":"abc"}`, "want 64 hex characters"},
		{"bad time", `{"seq":1,"time":"yesterday"}`, "line 1"},
	}
	for _, tc := range tests {
		if _, err := ReadJSONL(strings.NewReader(tc.in)); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: ReadJSONL error = %v, want one containing %q", tc.name, err, tc.wantErr)
		}
	}
	got, err := ReadJSONL(strings.NewReader("\n\n{\"seq\":7,\"time\":\"2026-11-22T11:00:00+01:00\"}\n\n"))
	if err != nil || len(got) != 1 || got[0].Seq != 7 || got[0].Time.Location() != time.UTC || !got[0].Time.Equal(baseTime) {
		t.Errorf("blank lines or time zone mishandled: %v %+v", err, got)
	}
}

type failWriter struct{}

var errWrite = errors.New("disk full")

func (failWriter) Write([]byte) (int, error) { return 0, errWrite }

func TestWriteCSV(t *testing.T) {
	t.Parallel()
	events := sealedEvents(t, 8)
	var buf bytes.Buffer
	if err := WriteCSV(&buf, events, true); err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "export/events.csv", buf.Bytes())

	rows, err := csv.NewReader(bytes.NewReader(buf.Bytes())).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(events)+1 {
		t.Fatalf("%d rows, want header + %d", len(rows), len(events))
	}
	wantHeader := []string{"seq", "time", "actor_kind", "actor_id", "actor_email", "action", "request_id", "grant_id", "resource", "reason", "evidence", "prev_hash", "hash"}
	if diff := cmp.Diff(wantHeader, rows[0]); diff != "" {
		t.Errorf("header (-want +got):\n%s", diff)
	}
	e := events[6] // seq 7: a reason with quotes, newline, tab and backslash
	wantRow := []string{"7", FormatTime(e.Time), "pagerduty", "PUSER01", "oncall@example.com", string(e.Action), "", "grt_2", "prod-aws",
		"checking <replication> lag & \"locks\"\n\tsee runbook\\db", `{"approvers":"U0LEAD,U0SEC","empty":"","incident":"Q7","schedule":"PSCHED1"}`, e.PrevHash.String(), e.Hash.String()}
	if diff := cmp.Diff(wantRow, rows[7]); diff != "" {
		t.Errorf("row for seq 7 (-want +got):\n%s", diff)
	}

	var noHeader bytes.Buffer
	if err := WriteCSV(&noHeader, events[:1], false); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(noHeader.String(), "1,2026-11-22T10:00:37.007Z,user,U0001,") {
		t.Errorf("CSV without header = %q", noHeader.String())
	}
	if err := WriteCSV(failWriter{}, events, true); !errors.Is(err, errWrite) {
		t.Errorf("WriteCSV to a failing writer = %v, want %v", err, errWrite)
	}
	if err := WriteJSONL(failWriter{}, events); !errors.Is(err, errWrite) {
		t.Errorf("WriteJSONL to a failing writer = %v, want %v", err, errWrite)
	}
	bad := []Event{{Seq: 1, Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}}
	if err := WriteCSV(&bytes.Buffer{}, bad, false); err == nil || !strings.Contains(err.Error(), "seq 1") {
		t.Errorf("WriteCSV with year 10000 = %v, want an error naming seq 1", err)
	}
	if err := WriteJSONL(&bytes.Buffer{}, bad); err == nil || !strings.Contains(err.Error(), "seq 1") {
		t.Errorf("WriteJSONL with year 10000 = %v, want an error naming seq 1", err)
	}
}

func TestEventJSON(t *testing.T) {
	t.Parallel()
	e := makeEvent(5)
	e.PrevHash, e.Hash = Hash{1}, Hash{2}
	e.Time = time.Date(2026, 11, 22, 11, 0, 0, 123_456_789, time.FixedZone("", 3600))
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	var generic map[string]any
	if err := json.Unmarshal(b, &generic); err != nil {
		t.Fatalf("MarshalJSON output is not JSON: %v\n%s", err, b)
	}
	if generic["time"] != "2026-11-22T10:00:00.123Z" || generic["prev_hash"] != (Hash{1}).String() || generic["hash"] != (Hash{2}).String() {
		t.Errorf("MarshalJSON = %s", b)
	}
	var back Event
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	want := e
	want.Time = e.Time.Truncate(time.Millisecond).UTC()
	if diff := cmp.Diff(want, back); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	if back.Time.Location() != time.UTC {
		t.Errorf("decoded time in %v, want UTC", back.Time.Location())
	}

	// Unmarshal replaces the whole event.
	stale := Event{Reason: "stale", Evidence: map[string]string{"a": "b"}}
	if err := json.Unmarshal([]byte(`{"seq":3,"time":"2026-11-22T10:00:00Z"}`), &stale); err != nil {
		t.Fatal(err)
	}
	if stale.Reason != "" || stale.Evidence != nil || stale.Seq != 3 {
		t.Errorf("UnmarshalJSON kept old fields: %+v", stale)
	}

	kept := Event{Seq: 9}
	if err := json.Unmarshal([]byte(`null`), &kept); err != nil || kept.Seq != 9 {
		t.Errorf("UnmarshalJSON(null) = %v, event %+v: want a no-op", err, kept)
	}

	// The export form shows anything; only Canonical rejects.
	odd := Event{Reason: "bad\xffbyte"}
	b, err = json.Marshal(odd)
	if err != nil {
		t.Fatalf("MarshalJSON of a zero-time, invalid-UTF-8 event: %v", err)
	}
	if !json.Valid(b) || !strings.Contains(string(b), `"reason":"bad\ufffdbyte"`) || !strings.Contains(string(b), `"time":"0001-01-01T00:00:00.000Z"`) {
		t.Errorf("MarshalJSON = %s", b)
	}
	if _, err := json.Marshal(Event{Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}); err == nil {
		t.Error("MarshalJSON accepted year 10000")
	}
}
