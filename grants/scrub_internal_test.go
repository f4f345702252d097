package grants

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

func TestScrubError(t *testing.T) {
	base := errors.New("dial: refused")
	tests := []struct {
		name     string
		err      error
		secrets  []string
		wantText string
		wantSame bool    // the very same error comes back
		kinds    []error // errors.Is must still hold
	}{
		{name: "nil", err: nil, wantSame: true},
		{name: "nothing to remove keeps the chain", err: fmt.Errorf("x: %w", base), secrets: []string{"hunter22"}, wantText: "x: dial: refused", wantSame: true},
		{name: "kinds survive", err: fmt.Errorf("pw hunter22: %w (%w)", ErrGone, context.DeadlineExceeded), secrets: []string{"hunter22"},
			wantText: "pw [REDACTED]: already gone (context deadline exceeded)", kinds: []error{ErrGone, context.DeadlineExceeded}},
		{name: "longest secret first", err: fmt.Errorf("dsn postgres://u:hunter22@h: %w", ErrNeedsOperator), secrets: []string{"hunter22", "postgres://u:hunter22@h"},
			wantText: "dsn [REDACTED]: needs an operator", kinds: []error{ErrNeedsOperator}},
		{name: "secrets under 4 bytes are ignored", err: errors.New("abc def"), secrets: []string{"abc", ""}, wantText: "abc def", wantSame: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := scrubError(tt.err, tt.secrets)
			if tt.err == nil {
				if got != nil {
					t.Fatalf("scrubError(nil) = %v", got)
				}
				return
			}
			if got.Error() != tt.wantText {
				t.Errorf("text = %q, want %q", got.Error(), tt.wantText)
			}
			if same := got == tt.err; same != tt.wantSame {
				t.Errorf("same error returned = %v, want %v", same, tt.wantSame)
			}
			if tt.wantSame && !errors.Is(got, base) && errors.Is(tt.err, base) {
				t.Error("unchanged error lost its chain")
			}
			for _, k := range tt.kinds {
				if !errors.Is(got, k) {
					t.Errorf("scrubbed error lost kind %v", k)
				}
			}
			if !tt.wantSame && errors.Is(got, base) {
				t.Error("scrubbed error still reaches the original chain")
			}
		})
	}
}
