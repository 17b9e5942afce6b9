package search

import (
	"strings"
	"unicode/utf8"
)

// MatchingValue writes s as a DICOM matching value (PS3.4 C.2.2.2) for a
// remote query: an ASCII character plain accepts as is, any other ASCII
// character as the single-character wildcard "?", and a run of characters
// beyond ASCII as "*" (a remote's character set may not hold them, and
// Orthanc's "?" does not match one). The match is broader than the value,
// never narrower; the Searcher checks what comes back against the patient
// exactly.
func MatchingValue(s string, plain func(rune) bool) string {
	var b strings.Builder
	beyond := false
	for _, r := range s {
		switch {
		case r >= utf8.RuneSelf:
			if !beyond {
				b.WriteByte('*')
			}
			beyond = true
			continue
		case plain(r):
			b.WriteRune(r)
		default:
			b.WriteByte('?')
		}
		beyond = false
	}
	return b.String()
}
