// Package printable holds the one rule for the text Priorflow keeps and
// writes into FHIR resources: UTF-8, without control characters other than
// tab, LF and CR. PostgreSQL text holds no NUL, and FHIR string values
// (R4 datatypes.html#string, which google/fhir's validation enforces) no
// other control character, so a value outside the rule makes a write fail
// wherever it lands; so does a cut inside a character (Truncate). It is
// internal because care events (triggers), DICOM headers
// (archive/dicomheader), remote sources' answers (search), and the errors
// the worker and the subscription deliverer record all come from outside
// and must meet it, and none of them should import another for it.
package printable

import (
	"strings"
	"unicode/utf8"
)

// Valid reports whether s meets the rule.
func Valid(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if control(s[i]) {
			return false
		}
	}
	return true
}

// Replace returns s with each control character outside the rule, and
// each byte that is not UTF-8, replaced by U+FFFD: the value still shows
// that something unreadable was there. It returns s itself when s is
// valid.
func Replace(s string) string {
	if Valid(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for _, r := range s {
		if r < 0x20 && control(byte(r)) {
			r = utf8.RuneError
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Truncate cuts s to at most n bytes, on a character boundary, and marks
// the cut with "…"; s itself when it is no longer than n.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func control(c byte) bool { return c < 0x20 && c != '\t' && c != '\n' && c != '\r' }
