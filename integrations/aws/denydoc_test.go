package awsprov

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestBucketEnd(t *testing.T) {
	t.Parallel()
	tests := map[time.Time]time.Time{
		time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC):    time.Date(2025, 3, 4, 6, 0, 0, 0, time.UTC),
		time.Date(2025, 3, 4, 6, 0, 0, 0, time.UTC):    time.Date(2025, 3, 4, 6, 0, 0, 0, time.UTC),
		time.Date(2025, 3, 4, 23, 59, 59, 1, time.UTC): time.Date(2025, 3, 5, 0, 0, 0, 0, time.UTC),
	}
	for in, want := range tests {
		if got := time.Unix(bucketEnd(in), 0).UTC(); !got.Equal(want) {
			t.Errorf("bucketEnd(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestDenyDocRoundTripAndPrune(t *testing.T) {
	t.Parallel()
	d := newDenyDoc()
	d.add("AROA1:s-b", t0.Add(30*time.Minute)) // 06:00 bucket
	d.add("AROA1:s-a", t0.Add(40*time.Minute)) // same bucket, sorted in
	d.add("AROA1:s-c", t0.Add(3*time.Hour))    // 09:00 bucket
	d.add("AROA1:s-a", t0.Add(40*time.Minute)) // duplicate ignored
	text := d.render()
	want := `{"Version":"2012-10-17","Statement":[` +
		`{"Sid":"AccessbrokerExp1741068000","Effect":"Deny","Action":"*","Resource":"*","Condition":{"StringEquals":{"aws:userid":["AROA1:s-a","AROA1:s-b"]}}},` +
		`{"Sid":"AccessbrokerExp1741078800","Effect":"Deny","Action":"*","Resource":"*","Condition":{"StringEquals":{"aws:userid":["AROA1:s-c"]}}}]}`
	if text != want {
		t.Fatalf("render\n got %s\nwant %s", text, want)
	}
	back, err := parseDenyDoc(text)
	if err != nil {
		t.Fatal(err)
	}
	if back.render() != text || back.sessions() != 3 || len(back.foreign) != 0 {
		t.Errorf("round trip changed the document: %s", back.render())
	}
	// Nothing is pruned until the bucket's hour plus the margin has passed.
	if n := back.prune(time.Date(2025, 3, 4, 6, 5, 0, 0, time.UTC)); n != 0 {
		t.Errorf("pruned %d at the margin", n)
	}
	if n := back.prune(time.Date(2025, 3, 4, 6, 5, 1, 0, time.UTC)); n != 2 {
		t.Errorf("pruned %d after the margin, want 2", n)
	}
	if back.covers("AROA1:s-a", time.Time{}, t0) || !back.covers("AROA1:s-c", time.Time{}, t0) {
		t.Error("covers disagrees with the pruned document")
	}
	back.prune(t0.Add(24 * time.Hour))
	if back.render() != "" {
		t.Errorf("fully pruned document renders %q", back.render())
	}
}

func TestDenyDocKeepsForeignStatementsAndReadsFixtures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		fixture     string
		wantForeign int
		wantOlder   bool
	}{
		{"aws-iam-deny-session-by-userid-policy.json", 1, false}, // StringLike with a Sid we did not write
		{"aws-iam-deny-session-by-sourceidentity-policy.json", 1, false},
		{"aws-iam-revoke-older-sessions-policy.json", 1, false}, // single-object Statement, no Sid
	}
	for _, tc := range tests {
		t.Run(tc.fixture, func(t *testing.T) {
			d, err := parseDenyDoc(string(readFixture(t, tc.fixture)))
			if err != nil {
				t.Fatal(err)
			}
			if len(d.foreign) != tc.wantForeign || (d.older != nil) != tc.wantOlder || d.sessions() != 0 {
				t.Fatalf("parsed %+v", d)
			}
			d.add("AROA1:s-1", t0)
			out := d.render()
			var v struct{ Statement []json.RawMessage }
			if err := json.Unmarshal([]byte(out), &v); err != nil || len(v.Statement) != 2 {
				t.Fatalf("rendered %s (%v)", out, err)
			}
			var orig, kept any
			_ = json.Unmarshal(v.Statement[1], &kept)
			var src struct{ Statement json.RawMessage }
			_ = json.Unmarshal(readFixture(t, tc.fixture), &src)
			if strings.HasPrefix(strings.TrimSpace(string(src.Statement)), "[") {
				var list []any
				_ = json.Unmarshal(src.Statement, &list)
				orig = list[0]
			} else {
				_ = json.Unmarshal(src.Statement, &orig)
			}
			if diff := cmp.Diff(orig, kept); diff != "" {
				t.Errorf("foreign statement changed (-orig +kept):\n%s", diff)
			}
		})
	}
}

func TestDenyDocFallback(t *testing.T) {
	t.Parallel()
	d := newDenyDoc()
	d.add("AROA1:s-1", t0.Add(time.Hour))
	d.foreign = append(d.foreign, json.RawMessage(`{"Sid":"Theirs","Effect":"Deny","Action":"s3:DeleteBucket","Resource":"*"}`))
	fb := d.fallback(t0, t0.Add(-time.Minute))
	if fb.sessions() != 0 || len(fb.foreign) != 1 || !fb.older.cutoff.Equal(t0.Add(time.Second)) || !fb.older.until.Equal(t0.Add(time.Second+12*time.Hour)) {
		t.Fatalf("fallback %+v", fb.older)
	}
	text := fb.render()
	want := `{"Version":"2012-10-17","Statement":[{"Sid":"AccessbrokerOlderUntil1741107968","Effect":"Deny","Action":"*","Resource":"*","Condition":{"DateLessThan":{"aws:TokenIssueTime":"2025-03-04T05:06:08Z"}}},{"Sid":"Theirs","Effect":"Deny","Action":"s3:DeleteBucket","Resource":"*"}]}`
	if text != want {
		t.Fatalf("fallback render\n got %s\nwant %s", text, want)
	}
	back, err := parseDenyDoc(text)
	if err != nil || back.older == nil || !back.older.cutoff.Equal(fb.older.cutoff) {
		t.Fatalf("parse fallback: %+v %v", back, err)
	}
	tests := []struct {
		name     string
		issuedAt time.Time
		now      time.Time
		want     bool
	}{
		{"issued well before the cutoff", t0.Add(-time.Hour), t0, true},
		{"issued at the cutoff's second", t0.Add(time.Second), t0, false},
		{"issue time unknown", time.Time{}, t0, false},
		{"cutoff expired", t0.Add(-time.Hour), t0.Add(13 * time.Hour), false},
	}
	for _, tc := range tests {
		if got := back.covers("AROA1:other", tc.issuedAt, tc.now); got != tc.want {
			t.Errorf("%s: covers = %v, want %v", tc.name, got, tc.want)
		}
	}
	// A broker clock behind AWS's: the cutoff still lands after the revoked session's issue time.
	late := d.fallback(t0, t0.Add(90*time.Second))
	if !late.older.cutoff.Equal(t0.Add(92 * time.Second)) {
		t.Errorf("cutoff %s, want 2s after the session's issue time", late.older.cutoff)
	}
}

func TestDecodePolicyDocument(t *testing.T) {
	t.Parallel()
	plain := `{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"*","Resource":"*","Condition":{"StringEquals":{"aws:userid":"A:b+c=d,e.f@g-h"}}}]}`
	tests := map[string]string{
		"plain":                   plain,
		"RFC 3986 encoded by IAM": "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%7B%22Effect%22%3A%22Deny%22%2C%22Action%22%3A%22%2A%22%2C%22Resource%22%3A%22%2A%22%2C%22Condition%22%3A%7B%22StringEquals%22%3A%7B%22aws%3Auserid%22%3A%22A%3Ab%2Bc%3Dd%2Ce.f%40g-h%22%7D%7D%7D%5D%7D",
		"plus left unencoded":     strings.ReplaceAll("%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%7B%22Effect%22%3A%22Deny%22%2C%22Action%22%3A%22%2A%22%2C%22Resource%22%3A%22%2A%22%2C%22Condition%22%3A%7B%22StringEquals%22%3A%7B%22aws%3Auserid%22%3A%22A%3Ab%2Bc%3Dd%2Ce.f%40g-h%22%7D%7D%7D%5D%7D", "%2B", "+"),
	}
	for name, in := range tests {
		got, err := decodePolicyDocument(in)
		if err != nil || got != plain {
			t.Errorf("%s: decode = %q, %v", name, got, err)
		}
	}
}

func TestPolicySizeIgnoresWhitespace(t *testing.T) {
	t.Parallel()
	if n := policySize("{ \"a\" :\n\t\"b c\" }"); n != 10 {
		t.Errorf("policySize = %d, want 10", n)
	}
}
