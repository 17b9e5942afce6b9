package worker

import (
	"testing"
	"unicode/utf8"
)

// A reason cut for a Task note stays UTF-8: cut inside "é", it lost its
// last byte, and the note its validity.
func TestTruncate_OnACharacterBoundary(t *testing.T) {
	for _, tc := range []struct {
		s    string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"abcdef", 3, "abc…"},
		{"aé", 2, "a…"},
		{"山田", 4, "山…"},
		{"山田", 3, "山…"},
	} {
		got := truncate(tc.s, tc.n)
		if got != tc.want || !utf8.ValidString(got) {
			t.Errorf("truncate(%q, %d) = %q, want %q", tc.s, tc.n, got, tc.want)
		}
	}
}
