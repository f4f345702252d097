package awsprov

import (
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
)

func strconvFormat(n int64) string { return strconv.FormatInt(n, 10) }

func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "fixtures", "aws", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sorted(s []string) []string {
	sort.Strings(s)
	return s
}

func without(s []string, drop string) []string {
	var out []string
	for _, x := range s {
		if x != drop {
			out = append(out, x)
		}
	}
	return out
}

func replace(s []string, from, to string) []string {
	out := make([]string, len(s))
	for i, x := range s {
		if x == from {
			x = to
		}
		out[i] = x
	}
	return sorted(out)
}
