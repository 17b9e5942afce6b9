package printable

import "testing"

func TestValidAndReplace(t *testing.T) {
	for _, tc := range []struct {
		in    string
		valid bool
		want  string
	}{
		{"", true, ""},
		{"CT CHEST", true, "CT CHEST"},
		{"Müller 山田 \uFFFD", true, "Müller 山田 \uFFFD"},
		{"one\ttwo\r\nthree", true, "one\ttwo\r\nthree"},
		{"\x7f\u0085", true, "\x7f\u0085"}, // DEL and C1 controls: FHIR takes them
		{"CT\x00HEAD", false, "CT\uFFFDHEAD"},
		{"\x01\x1b\x1f", false, "\uFFFD\uFFFD\uFFFD"},
		{"\x0cpage", false, "\uFFFDpage"},
		{"M\xfcller", false, "M\uFFFDller"},
		{"\xe5\xb1", false, "\uFFFD\uFFFD"}, // as Go ranges over it
	} {
		if got := Valid(tc.in); got != tc.valid {
			t.Errorf("Valid(%q) = %v, want %v", tc.in, got, tc.valid)
		}
		got := Replace(tc.in)
		if got != tc.want {
			t.Errorf("Replace(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if !Valid(got) {
			t.Errorf("Replace(%q) = %q is not valid", tc.in, got)
		}
	}
}

// A cut lands on a character boundary: cut inside "é", a reason lost its
// last byte, and the Task note or the database row its validity.
func TestTruncate(t *testing.T) {
	for _, tc := range []struct {
		s    string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"short", 5, "short"},
		{"abcdef", 3, "abc…"},
		{"aé", 2, "a…"},
		{"山田", 4, "山…"},
		{"山田", 3, "山…"},
		{"山", 2, "…"},
	} {
		got := Truncate(tc.s, tc.n)
		if got != tc.want || !Valid(got) {
			t.Errorf("Truncate(%q, %d) = %q, want %q", tc.s, tc.n, got, tc.want)
		}
	}
}

func FuzzReplace(f *testing.F) {
	for _, s := range []string{"CT\x00HEAD", "M\xfcller", "ok", "\t\r\n", "\xe5\xb1\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := Replace(s)
		if !Valid(got) {
			t.Fatalf("Replace(%q) = %q, not valid", s, got)
		}
		if Valid(s) != (got == s) {
			t.Fatalf("Replace(%q) = %q: changed a valid string, or kept an invalid one", s, got)
		}
	})
}
