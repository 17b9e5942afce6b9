// Package singlebyte reads text in the single-byte character sets that
// both HL7 v2 (MSH-18, table 0211) and DICOM (Specific Character Set,
// 0008,0005) declare: the ISO 8859 parts. It is internal because two
// top-level packages, triggers/hl7v2 and archive/dicomheader, need the
// same reading and neither should import the other.
package singlebyte

import (
	"unicode/utf8"

	"golang.org/x/text/encoding/charmap"
)

// Decode returns src, read in cm, as UTF-8; src itself when it holds
// nothing beyond ASCII. It reports false when cm leaves a byte of src
// undefined: x/text would decode that byte as U+FFFD, so that two values
// differing only there (two patient IDs) would read as one.
func Decode[T string | []byte](src T, cm *charmap.Charmap) (T, bool) {
	n := 0
	for i := 0; i < len(src); i++ {
		if src[i] >= utf8.RuneSelf {
			n++
		}
	}
	if n == 0 {
		return src, true
	}
	// Every byte beyond ASCII takes at most three in UTF-8.
	out := make([]byte, 0, len(src)+2*n)
	for i := 0; i < len(src); i++ {
		c := src[i]
		if c < utf8.RuneSelf {
			out = append(out, c)
			continue
		}
		r := cm.DecodeByte(c)
		if r == utf8.RuneError {
			var zero T
			return zero, false
		}
		out = utf8.AppendRune(out, r)
	}
	return T(out), true
}
