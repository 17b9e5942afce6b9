package dicomweb

import (
	"cmp"
	"mime"
	"slices"
	"strconv"
	"strings"
)

// Media types of DICOMweb responses (PS3.18 8.7.3).
const (
	mediaDICOM       = "application/dicom"
	mediaDICOMJSON   = "application/dicom+json"
	mediaOctetStream = "application/octet-stream"
	mediaMultipart   = "multipart/related"
)

// mediaRange is one element of an Accept header (RFC 9110 12.5.1).
type mediaRange struct {
	typ    string            // lower-cased, such as "multipart/related" or "*/*"
	params map[string]string // keys lower-cased, q removed
	q      float64
}

// parseAccept parses an Accept header into its media ranges, most
// preferred first (by q, then by order). Ranges that do not parse and those
// with q=0 are left out. An absent header is "*/*".
func parseAccept(h []string) []mediaRange {
	if len(h) == 0 {
		return []mediaRange{{typ: "*/*", q: 1}}
	}
	var out []mediaRange
	for _, line := range h {
		for _, part := range splitAccept(line) {
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			mt, params, err := mime.ParseMediaType(part)
			if err != nil {
				// Clients commonly send type=application/dicom unquoted.
				mt, params, err = parseLenientMedia(part)
				if err != nil {
					continue
				}
			}
			q := 1.0
			if v, ok := params["q"]; ok {
				f, err := strconv.ParseFloat(v, 64)
				if err != nil || f < 0 || f > 1 {
					continue
				}
				q = f
				delete(params, "q")
			}
			if q == 0 {
				continue
			}
			out = append(out, mediaRange{typ: mt, params: params, q: q})
		}
	}
	slices.SortStableFunc(out, func(a, b mediaRange) int { return cmp.Compare(b.q, a.q) })
	return out
}

// splitAccept splits an Accept header at the commas between media ranges,
// not those inside quoted parameter values.
func splitAccept(s string) []string {
	var out []string
	start, quoted := 0, false
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"':
			quoted = !quoted
		case '\\':
			if quoted {
				i++
			}
		case ',':
			if !quoted {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	return append(out, s[start:])
}

func parseLenientMedia(v string) (string, map[string]string, error) {
	fields := strings.Split(v, ";")
	mt := strings.ToLower(strings.TrimSpace(fields[0]))
	if strings.Count(mt, "/") != 1 {
		return "", nil, strconv.ErrSyntax
	}
	params := map[string]string{}
	for _, f := range fields[1:] {
		k, val, ok := strings.Cut(strings.TrimSpace(f), "=")
		if !ok {
			return "", nil, strconv.ErrSyntax
		}
		params[strings.ToLower(strings.TrimSpace(k))] = strings.Trim(strings.TrimSpace(val), `"`)
	}
	return mt, params, nil
}

// typeParam returns the media type of a multipart range's "type" parameter,
// lower-cased without its own parameters, or "" when absent.
func (m mediaRange) typeParam() string {
	t := m.params["type"]
	if t == "" {
		return ""
	}
	if mt, _, err := mime.ParseMediaType(t); err == nil {
		return mt
	}
	return strings.ToLower(strings.TrimSpace(t))
}

// syntaxes is what a client accepts of the transfer syntaxes of DICOM
// instances: any (as stored), or only those listed.
type syntaxes struct {
	any  bool
	uids []string
}

func (s syntaxes) accepts(uid string) bool { return s.any || slices.Contains(s.uids, uid) }

// negotiateDICOM reads the Accept header of a request for DICOM instances
// (PS3.18 8.7.3.5, 8.7.5): multipart/related with type application/dicom
// (or no type), multipart/*, or */*, each with an optional transfer-syntax
// parameter, "*" meaning any. ok is false when the client accepts none of
// these.
func negotiateDICOM(accept []string) (s syntaxes, ok bool) {
	for _, m := range parseAccept(accept) {
		switch {
		case m.typ == "*/*", m.typ == "multipart/*":
		case m.typ == mediaMultipart && (m.typeParam() == "" || m.typeParam() == mediaDICOM || m.typeParam() == "application/*"):
		default:
			continue
		}
		ok = true
		ts := m.params["transfer-syntax"]
		if ts == "" || ts == "*" {
			s.any = true
		} else {
			s.uids = append(s.uids, ts)
		}
	}
	return s, ok
}

// negotiateJSON reports whether a metadata or search response of
// application/dicom+json is acceptable (PS3.18 8.7.3.2, 10.6.3).
func negotiateJSON(accept []string) bool {
	for _, m := range parseAccept(accept) {
		switch m.typ {
		case "*/*", "application/*", mediaDICOMJSON, "application/json":
			return true
		}
	}
	return false
}

// negotiateBulk chooses how to send bulk data (PS3.18 8.7.3.3): in
// multipart/related with type application/octet-stream, the default, or as
// a single application/octet-stream body when the client prefers it.
func negotiateBulk(accept []string) (multipart, ok bool) {
	for _, m := range parseAccept(accept) {
		switch {
		case m.typ == "*/*", m.typ == "multipart/*":
			return true, true
		case m.typ == mediaMultipart:
			switch m.typeParam() {
			case "", mediaOctetStream, "application/*", "*/*":
				return true, true
			}
		case m.typ == mediaOctetStream, m.typ == "application/*":
			return false, true
		}
	}
	return false, false
}
