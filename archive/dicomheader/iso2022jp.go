package dicomheader

import (
	"bytes"
	"io"
	"slices"
	"strings"

	"golang.org/x/text/encoding/japanese"
)

// Japanese names are mostly written with Specific Character Set
// "ISO 2022 IR 13\ISO 2022 IR 87" (PS3.5 H.3.2): half-width katakana (JIS X
// 0201) in the alphabetic group, kanji and kana (JIS X 0208) after escape
// sequences in the others. The dicom library reads every value with the
// decoder of the second set, ISO-2022-JP, which does not take the
// katakana: "ﾔﾏﾀﾞ^ﾀﾛｳ" read as U+FFFD. For such a data set Parse hides the
// Specific Character Set from the library, which then leaves text as
// bytes, and decodes the bytes itself (PS3.5 6.1.2.5.3).

// ownJapanese reports whether the Specific Character Set values names
// call for decodeJapanese: JIS X 0201 katakana with a set of JIS X 0208 or
// 0212 kanji, and nothing else.
func ownJapanese(names []string) bool {
	var katakana, kanji bool
	for _, n := range names {
		switch strings.TrimSpace(n) {
		case "", "ISO 2022 IR 6":
		case "ISO 2022 IR 13":
			katakana = true
		case "ISO 2022 IR 87", "ISO 2022 IR 159":
			kanji = true
		default:
			return false
		}
	}
	return katakana && kanji
}

// charsetNames splits a stored Specific Character Set value as the library
// does: padding trimmed, then split at "\".
func charsetNames(raw []byte) []string {
	return strings.Split(strings.Trim(string(raw), " \x00"), `\`)
}

// hideCharset returns in with the n bytes at offset off, the Specific
// Character Set value, replaced by spaces: a set the library does not
// know, so it reads text as bytes.
func hideCharset(in io.Reader, off int64, n int) io.Reader {
	return io.MultiReader(io.LimitReader(in, off), bytes.NewReader(bytes.Repeat([]byte{' '}, n)), &skipper{r: in, n: int64(n)})
}

// skipper reads r after discarding its first n bytes.
type skipper struct {
	r io.Reader
	n int64
}

func (s *skipper) Read(p []byte) (int, error) {
	if s.n > 0 {
		k, err := io.CopyN(io.Discard, s.r, s.n)
		s.n -= k
		if err != nil {
			return 0, err
		}
	}
	return s.r.Read(p)
}

// decodeJapanese reads raw, one value in the code extensions of PS3.5
// 6.1.2.5 for Japanese (Annex H): G0 is ASCII, or JIS X 0201 romaji when
// the first set is ISO 2022 IR 13, until an escape sequence designates JIS
// X 0208 or 0212; G1 is JIS X 0201 katakana where ISO 2022 IR 13 is the
// first set or designated. The designations return to the first set's at
// each delimiter of a name or text (^ = CR LF TAB FF). The value is
// rewritten as EUC-JP, which holds the same sets, and decoded from it; a
// byte no set holds reads as U+FFFD.
func decodeJapanese(raw string, names []string) string {
	katakanaFirst := len(names) > 0 && strings.TrimSpace(names[0]) == "ISO 2022 IR 13"
	const (
		single = iota // ASCII or romaji, one byte each
		jis0208
		jis0212
	)
	g0, katakana := single, katakanaFirst
	var euc []byte
	for i := 0; i < len(raw); i++ {
		b := raw[i]
		switch {
		case b == 0x1b:
			rest := raw[i+1:]
			switch {
			case strings.HasPrefix(rest, "(B"), strings.HasPrefix(rest, "(J"):
				g0, i = single, i+2
			case strings.HasPrefix(rest, "$B"), strings.HasPrefix(rest, "$@"):
				g0, i = jis0208, i+2
			case strings.HasPrefix(rest, "$(D"):
				g0, i = jis0212, i+3
			case strings.HasPrefix(rest, ")I"):
				katakana, i = true, i+2
			default:
				euc = append(euc, b) // not a designation: left for the caller
			}
		case b >= 0xa1 && b <= 0xdf && katakana:
			euc = append(euc, 0x8e, b)
		case b >= 0x80:
			euc = append(euc, 0xff) // no set here holds it
		case g0 == single:
			euc = append(euc, b)
			if slices.Contains([]byte("^=\r\n\t\f"), b) {
				katakana = katakanaFirst
			}
		case b < 0x21 || b > 0x7e || i+1 >= len(raw) || raw[i+1] < 0x21 || raw[i+1] > 0x7e:
			// A control character or a lone byte inside a two-byte set.
			euc = append(euc, 0xff)
		case g0 == jis0208:
			euc = append(euc, b|0x80, raw[i+1]|0x80)
			i++
		default:
			euc = append(euc, 0x8f, b|0x80, raw[i+1]|0x80)
			i++
		}
	}
	out, err := japanese.EUCJP.NewDecoder().Bytes(euc)
	if err != nil {
		return string(bytes.ToValidUTF8(euc, []byte("\uFFFD")))
	}
	return string(out)
}
