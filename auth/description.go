package auth

import "strings"

// ErrorDescription keeps only the characters OAuth 2.0 allows in an
// error_description (RFC 6749 §5.2 and RFC 6750 §3: %x20-21 / %x23-5B /
// %x5D-7E): a double quote becomes a single one, a backslash a slash, and
// anything else outside the set is dropped, so that a value that came from
// a request or a token cannot break a WWW-Authenticate header or a token
// endpoint's error.
func ErrorDescription(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '"':
			return '\''
		case r == '\\':
			return '/'
		case r >= 0x20 && r <= 0x7e:
			return r
		}
		return -1
	}, s)
}
