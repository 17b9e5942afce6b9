package search

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/priorflow/priorflow/fhir"
)

// Options tune parsing.
type Options struct {
	// Lenient ignores unknown parameters (Prefer: handling=lenient) and
	// reports them in Query.Ignored instead of failing.
	Lenient bool
	// BaseURL is this server's FHIR base; absolute references under it are
	// treated as local references.
	BaseURL string
	// Now anchors the "ap" prefix; zero means time.Now.
	Now time.Time
}

// Limits that keep one request from turning into an unbounded query.
const (
	maxClauses = 64
	maxValues  = 256
	maxValue   = 1024
	maxChain   = 2
	// maxSort bounds the _sort keys; a cursor carries one value per key.
	maxSort = 4
)

// Parse parses the query parameters of a search on typ.
func Parse(reg *fhir.Registry, typ *fhir.ResourceType, params url.Values, opt Options) (*Query, error) {
	q := &Query{Type: typ, Count: DefaultCount}
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys) // deterministic clause order (and SQL text) for one request
	nvalues := 0
	for _, key := range keys {
		if len(key) > maxValue {
			return nil, fhir.Errorf(fhir.KindInvalid, "a parameter name is too long (at most %d characters)", maxValue)
		}
		if !utf8.ValidString(key) {
			return nil, fhir.Errorf(fhir.KindInvalid, "a parameter name is not UTF-8")
		}
		for _, raw := range params[key] {
			// A URI carries text as percent-encoded UTF-8 (RFC 3986
			// 2.5), which is what the index holds; a value in another
			// encoding, say Latin-1 from an older client, matches
			// nothing, and the database refuses it.
			if !utf8.ValidString(raw) {
				return nil, fhir.Errorf(fhir.KindInvalid, "value of %s is not UTF-8; percent-encode the UTF-8 bytes of the text (ü is %%C3%%BC)", key).At(key)
			}
			// No FHIR string holds a NUL, and no database text can.
			if strings.IndexByte(raw, 0) >= 0 {
				return nil, fhir.Errorf(fhir.KindInvalid, "value of %s holds a NUL character (%%00)", key).At(key)
			}
			// Comma-separated alternatives count one each: "a,b,c" is three.
			nvalues += max(1, len(splitValues(raw)))
			if nvalues > maxValues {
				return nil, fhir.Errorf(fhir.KindInvalid, "too many search parameter values (at most %d)", maxValues)
			}
			if len(raw) > maxValue {
				return nil, fhir.Errorf(fhir.KindInvalid, "value of %s is too long (at most %d characters)", key, maxValue).At(key)
			}
			if handled, err := q.parseResultParam(reg, key, raw); handled {
				if err != nil {
					return nil, err
				}
				continue
			}
			c, err := parseClause(reg, typ, key, raw, opt, 0)
			if err != nil {
				if fhir.IsKind(err, fhir.KindNotFound) && opt.Lenient {
					if !contains(q.Ignored, key) {
						q.Ignored = append(q.Ignored, key)
					}
					continue
				}
				if fhir.IsKind(err, fhir.KindNotFound) {
					return nil, fhir.Errorf(fhir.KindInvalid, "%s", err.(*fhir.Error).Message).At(key)
				}
				return nil, err
			}
			q.Clauses = append(q.Clauses, *c)
			if len(q.Clauses) > maxClauses {
				return nil, fhir.Errorf(fhir.KindInvalid, "too many search parameters (at most %d)", maxClauses)
			}
		}
	}
	if q.Summary == "count" {
		q.Count = 0
	}
	return q, nil
}

// parseResultParam handles the result parameters (FHIR R4 3.1.1.5.x); it
// reports whether key was one.
func (q *Query) parseResultParam(reg *fhir.Registry, key, raw string) (bool, error) {
	switch key {
	case "_format", "_pretty":
		return true, nil // handled by the HTTP layer
	case "_count":
		n, err := strconv.Atoi(raw)
		if err != nil || n < 0 {
			return true, fhir.Errorf(fhir.KindInvalid, "_count must be a non-negative integer, got %q", raw).At("_count")
		}
		if n > MaxCount {
			n = MaxCount
		}
		q.Count = n
	case "_sort":
		for _, s := range strings.Split(raw, ",") {
			desc := strings.HasPrefix(s, "-")
			name := strings.TrimPrefix(s, "-")
			if name != "_id" && name != "_lastUpdated" && !contains(q.Type.Sorts, name) {
				return true, fhir.Errorf(fhir.KindInvalid, "cannot sort %s by %q; supported: %s", q.Type.Name, name,
					strings.Join(append([]string{"_id", "_lastUpdated"}, q.Type.Sorts...), ", ")).At("_sort")
			}
			q.Sort = append(q.Sort, Sort{Param: name, Desc: desc})
		}
		if len(q.Sort) > maxSort {
			return true, fhir.Errorf(fhir.KindInvalid, "_sort takes at most %d keys", maxSort).At("_sort")
		}
	case "_summary":
		// true and text need each element's summary flag; rather than claim
		// them and return full resources, they are refused.
		switch raw {
		case "count", "false", "data":
			q.Summary = raw
		case "true", "text":
			return true, fhir.Errorf(fhir.KindInvalid, "_summary=%s is not supported by this server; use count, data or false, or _elements", raw).At("_summary")
		default:
			return true, fhir.Errorf(fhir.KindInvalid, "_summary must be one of true, false, text, data, count").At("_summary")
		}
	case "_total":
		switch raw {
		case "none", "estimate", "accurate":
			q.Total = raw
		default:
			return true, fhir.Errorf(fhir.KindInvalid, "_total must be one of none, estimate, accurate").At("_total")
		}
	case "_elements":
		for _, e := range strings.Split(raw, ",") {
			if e = strings.TrimSpace(e); e != "" {
				q.Elements = append(q.Elements, e)
			}
		}
	case "_include", "_include:iterate", "_revinclude", "_revinclude:iterate":
		inc, err := parseInclude(reg, raw)
		if err != nil {
			return true, err.At(strings.SplitN(key, ":", 2)[0])
		}
		if strings.HasPrefix(key, "_include") {
			if inc.Source != q.Type.Name {
				return true, fhir.Errorf(fhir.KindInvalid, "_include=%s does not start with the searched type %s", raw, q.Type.Name).At("_include")
			}
			q.Include = append(q.Include, inc)
		} else {
			p := reg.Type(inc.Source).Param(inc.Param)
			if len(p.Targets) > 0 && !contains(p.Targets, q.Type.Name) {
				return true, fhir.Errorf(fhir.KindInvalid, "_revinclude=%s cannot point at %s", raw, q.Type.Name).At("_revinclude")
			}
			q.RevInclude = append(q.RevInclude, inc)
		}
	case "_cursor":
		c, err := DecodeCursor(raw)
		if err != nil {
			return true, fhir.Errorf(fhir.KindInvalid, "the paging link is damaged; start the search again").At("_cursor")
		}
		q.Cursor = c
	case "_contained", "_containedType", "_has", "_list", "_text", "_content", "_query", "_filter", "_type":
		return true, fhir.Errorf(fhir.KindInvalid, "parameter %s is not supported by this server", key).At(key)
	default:
		return false, nil
	}
	return true, nil
}

func parseInclude(reg *fhir.Registry, raw string) (Include, *fhir.Error) {
	parts := strings.Split(raw, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return Include{}, fhir.Errorf(fhir.KindInvalid, "include %q must be Type:parameter[:TargetType]", raw)
	}
	inc := Include{Source: parts[0], Param: parts[1]}
	if len(parts) == 3 {
		inc.Target = parts[2]
	}
	t := reg.Type(inc.Source)
	if t == nil || !contains(t.Includes, inc.Param) {
		return Include{}, fhir.Errorf(fhir.KindInvalid, "include %q is not supported", raw)
	}
	if inc.Target != "" {
		p := t.Param(inc.Param)
		if reg.Type(inc.Target) == nil || (len(p.Targets) > 0 && !contains(p.Targets, inc.Target)) {
			return Include{}, fhir.Errorf(fhir.KindInvalid, "include %q: %s is not a target of %s", raw, inc.Target, inc.Param)
		}
	}
	return inc, nil
}

var nameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_\-]*$`)

func parseClause(reg *fhir.Registry, typ *fhir.ResourceType, key, raw string, opt Options, depth int) (*Clause, error) {
	name, rest, chained := strings.Cut(key, ".")
	name, mod, _ := strings.Cut(name, ":")
	if !nameRE.MatchString(name) {
		return nil, fhir.Errorf(fhir.KindInvalid, "%q is not a valid parameter name", name).At(key)
	}
	p := typ.Param(name)
	if p == nil {
		return nil, fhir.Errorf(fhir.KindNotFound, "unknown search parameter %q for %s", name, typ.Name)
	}
	c := &Clause{Param: p}
	if chained {
		if p.Type != fhir.ParamReference {
			return nil, fhir.Errorf(fhir.KindInvalid, "%s is not a reference parameter and cannot be chained", name).At(key)
		}
		if depth >= maxChain {
			return nil, fhir.Errorf(fhir.KindInvalid, "chains are limited to %d levels", maxChain).At(key)
		}
		target := mod
		if target == "" {
			if len(p.Targets) != 1 {
				return nil, fhir.Errorf(fhir.KindInvalid, "%s can point at several types; name one, as %s:Type.%s", name, name, rest).At(key)
			}
			target = p.Targets[0]
		}
		tt := reg.Type(target)
		if tt == nil || (len(p.Targets) > 0 && !contains(p.Targets, target)) {
			return nil, fhir.Errorf(fhir.KindInvalid, "%s cannot point at %s", name, target).At(key)
		}
		inner, err := parseClause(reg, tt, rest, raw, opt, depth+1)
		if err != nil {
			if fe, ok := err.(*fhir.Error); ok {
				// Name the whole chain, not just its inner parameter.
				fe = &fhir.Error{Kind: fe.Kind, Message: fe.Message, Err: fe.Err}
				if fe.Kind == fhir.KindNotFound {
					fe.Kind = fhir.KindInvalid
				}
				return nil, fe.At(key)
			}
			return nil, err
		}
		c.TargetType = target
		c.Chain = inner
		return c, nil
	}
	if err := c.setModifier(reg, mod); err != nil {
		return nil, err.At(key)
	}
	if c.Modifier == ModMissing {
		switch raw {
		case "true", "false":
			b := raw == "true"
			c.Missing = &b
			return c, nil
		}
		return nil, fhir.Errorf(fhir.KindInvalid, ":missing takes true or false, got %q", raw).At(key)
	}
	for _, v := range splitValues(raw) {
		val, err := parseValue(p, c, v, opt)
		if err != nil {
			return nil, err.At(key)
		}
		c.Values = append(c.Values, val)
	}
	if len(c.Values) == 0 {
		return nil, fhir.Errorf(fhir.KindInvalid, "parameter %s has no value", key).At(key)
	}
	return c, nil
}

func (c *Clause) setModifier(reg *fhir.Registry, mod string) *fhir.Error {
	p := c.Param
	switch {
	case mod == "":
		return nil
	case mod == "missing" && p != fhir.ParamID:
		c.Modifier = ModMissing
	case (mod == "exact" || mod == "contains") && p.Type == fhir.ParamString:
		c.Modifier = Modifier(mod)
	case mod == "not" && p.Type == fhir.ParamToken:
		c.Modifier = ModNot
	case p.Type == fhir.ParamReference && fhir.IsResourceType(mod) && (len(p.Targets) == 0 || contains(p.Targets, mod)):
		c.TargetType = mod
	default:
		return fhir.Errorf(fhir.KindInvalid, "modifier :%s is not supported on %s (a %s parameter)", mod, p.Name, p.Type)
	}
	return nil
}

// splitValues splits on commas not escaped with a backslash (FHIR R4
// 3.1.1.4.11); escapes of "\," "\|" "\$" "\\" are kept for the type parser.
func splitValues(raw string) []string {
	var out []string
	var cur strings.Builder
	for i := 0; i < len(raw); i++ {
		switch {
		case raw[i] == '\\' && i+1 < len(raw):
			cur.WriteByte(raw[i])
			cur.WriteByte(raw[i+1])
			i++
		case raw[i] == ',':
			out = append(out, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(raw[i])
		}
	}
	out = append(out, cur.String())
	// Empty alternatives ("a,,b") carry no meaning; drop them.
	kept := out[:0]
	for _, v := range out {
		if v != "" {
			kept = append(kept, v)
		}
	}
	return kept
}

// cutUnescaped splits s at the first unescaped sep.
func cutUnescaped(s string, sep byte) (before, after string, found bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' {
			i++
			continue
		}
		if s[i] == sep {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// unescape removes the backslash of the escapes FHIR defines ("\," "\|"
// "\$" "\\"); any other backslash is part of the value.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) && strings.IndexByte(`,|$\`, s[i+1]) >= 0 {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func parseValue(p *fhir.SearchParam, c *Clause, raw string, opt Options) (Value, *fhir.Error) {
	switch p.Type {
	case fhir.ParamToken:
		sys, code, hasBar := cutUnescaped(raw, '|')
		if !hasBar {
			return Value{Token: fhir.Token{Code: unescape(raw)}}, nil
		}
		v := Value{Token: fhir.Token{System: unescape(sys), Code: unescape(code)}, SystemSet: true}
		if v.Token.System == "" && v.Token.Code == "" {
			return Value{}, fhir.Errorf(fhir.KindInvalid, "token %q has neither system nor code", raw)
		}
		return v, nil
	case fhir.ParamString, fhir.ParamURI:
		return Value{String: unescape(raw)}, nil
	case fhir.ParamDate:
		prefix, rest := splitPrefix(raw)
		r, err := ParseDate(rest)
		if err != nil {
			return Value{}, fhir.Errorf(fhir.KindInvalid, "%q is not a valid FHIR date/time: %v", raw, err)
		}
		if prefix == PrefixAp {
			r = approximate(r, opt.Now)
		}
		return Value{Prefix: prefix, Date: r}, nil
	case fhir.ParamNumber:
		prefix, rest := splitPrefix(raw)
		f, err := strconv.ParseFloat(rest, 64)
		if err != nil {
			return Value{}, fhir.Errorf(fhir.KindInvalid, "%q is not a number", raw)
		}
		return Value{Prefix: prefix, Number: f}, nil
	case fhir.ParamReference:
		ref, err := parseReference(unescape(raw), c.TargetType, opt.BaseURL)
		if err != nil {
			return Value{}, err
		}
		if c.TargetType == "" && ref.Type == "" && len(p.Targets) == 1 {
			ref.Type = p.Targets[0]
		}
		if ref.Type != "" && len(p.Targets) > 0 && !contains(p.Targets, ref.Type) {
			return Value{}, fhir.Errorf(fhir.KindInvalid, "%s cannot point at %s", p.Name, ref.Type)
		}
		return Value{Ref: ref}, nil
	}
	return Value{}, fhir.Errorf(fhir.KindInvalid, "parameter type %s is not searchable", p.Type)
}

func splitPrefix(raw string) (Prefix, string) {
	if len(raw) >= 2 {
		switch pr := Prefix(raw[:2]); pr {
		case PrefixEq, PrefixNe, PrefixGt, PrefixLt, PrefixGe, PrefixLe, PrefixSa, PrefixEb, PrefixAp:
			return pr, raw[2:]
		}
	}
	return PrefixEq, raw
}

// parseReference accepts "id", "Type/id", "Type/id/_history/n" and absolute
// URLs (FHIR R4 3.1.1.4.6).
func parseReference(raw, targetType, base string) (fhir.Ref, *fhir.Error) {
	if raw == "" {
		return fhir.Ref{}, fhir.Errorf(fhir.KindInvalid, "empty reference")
	}
	abs := strings.Contains(raw, "://")
	s := raw
	if rest, under := fhir.UnderBase(raw, base); abs && under {
		s, abs = rest, false
	}
	if abs {
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" {
			return fhir.Ref{}, fhir.Errorf(fhir.KindInvalid, "%q is not a valid reference URL", raw)
		}
		return fhir.Ref{URL: raw}, nil
	}
	parts := strings.Split(s, "/")
	if n := len(parts); n == 4 && parts[2] == "_history" {
		parts = parts[:2]
	}
	switch len(parts) {
	case 1:
		if !fhir.ValidID(parts[0]) {
			return fhir.Ref{}, fhir.Errorf(fhir.KindInvalid, "%q is not a valid resource id", parts[0])
		}
		return fhir.Ref{Type: targetType, ID: parts[0]}, nil
	case 2:
		if !fhir.IsResourceType(parts[0]) || !fhir.ValidID(parts[1]) {
			return fhir.Ref{}, fhir.Errorf(fhir.KindInvalid, "%q is not a valid reference", raw)
		}
		if targetType != "" && parts[0] != targetType {
			return fhir.Ref{}, fhir.Errorf(fhir.KindInvalid, "reference %q contradicts the :%s modifier", raw, targetType)
		}
		return fhir.Ref{Type: parts[0], ID: parts[1]}, nil
	}
	return fhir.Ref{}, fhir.Errorf(fhir.KindInvalid, "%q is not a valid reference", raw)
}

// The zone is Z or an offset up to ±14:00 (FHIR R4 2.24.0.1 dateTime).
var dateRE = regexp.MustCompile(`^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(\.\d{1,9})?)?(Z|[+-](?:(?:0\d|1[0-3]):[0-5]\d|14:00))?)?)?)?$`)

// ParseDate parses a FHIR search date (date, dateTime or instant, possibly
// partial) into the range it implies (FHIR R4 3.1.1.4.2). A time without a
// zone is taken as UTC, the server's zone.
func ParseDate(s string) (fhir.DateRange, error) {
	m := dateRE.FindStringSubmatch(s)
	if i := strings.LastIndexByte(s, ' '); m == nil && i > 0 {
		// An unencoded "+" of an offset arrives as a space.
		m = dateRE.FindStringSubmatch(s[:i] + "+" + s[i+1:])
	}
	if m == nil {
		return fhir.DateRange{}, fmt.Errorf("expected YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm[:ss[.fff]][Z|+hh:mm]")
	}
	atoi := func(x string, def int) int {
		if x == "" {
			return def
		}
		n, _ := strconv.Atoi(x)
		return n
	}
	loc := time.UTC
	if tz := m[8]; tz != "" && tz != "Z" {
		t, err := time.Parse("-07:00", tz)
		if err != nil {
			return fhir.DateRange{}, fmt.Errorf("bad time zone %q", tz)
		}
		_, off := t.Zone()
		loc = time.FixedZone(tz, off)
	}
	y, mo, d, h, mi, sec := atoi(m[1], 0), atoi(m[2], 1), atoi(m[3], 1), atoi(m[4], 0), atoi(m[5], 0), atoi(m[6], 0)
	if mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60 {
		return fhir.DateRange{}, fmt.Errorf("field out of range")
	}
	var ns int
	unit := time.Duration(0) // the precision of a fraction: 0.1s for ".5"
	if frac := m[7]; frac != "" {
		digits := frac[1:]
		ns, _ = strconv.Atoi((digits + "000000000")[:9])
		unit = time.Second
		for range digits {
			unit /= 10
		}
	}
	t := time.Date(y, time.Month(mo), d, h, mi, sec, ns, loc)
	if t.Day() != d {
		return fhir.DateRange{}, fmt.Errorf("no such day")
	}
	var p fhir.Precision
	switch {
	case m[2] == "":
		p = fhir.PrecisionYear
	case m[3] == "":
		p = fhir.PrecisionMonth
	case m[4] == "":
		p = fhir.PrecisionDay
	case m[6] == "":
		p = fhir.PrecisionMinute
	case m[7] == "":
		p = fhir.PrecisionSecond
	default:
		return fhir.DateRange{Start: t, End: t.Add(unit)}, nil
	}
	return fhir.Range(t, p), nil
}

// approximate widens r by 10% of its distance from now on each side, at
// least a day: the "ap" prefix is left to the server by FHIR R4, and this is
// the usual reading.
func approximate(r fhir.DateRange, now time.Time) fhir.DateRange {
	if now.IsZero() {
		now = time.Now()
	}
	d := now.Sub(r.Start)
	if d < 0 {
		d = -d
	}
	w := d / 10
	if w < 24*time.Hour {
		w = 24 * time.Hour
	}
	return fhir.DateRange{Start: r.Start.Add(-w), End: r.End.Add(w)}
}

// EncodeCursor and DecodeCursor serialize a paging position for links.
func EncodeCursor(c *Cursor) string {
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(b)
}

// DecodeCursor reverses EncodeCursor.
func DecodeCursor(s string) (*Cursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, err
	}
	var c Cursor
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, err
	}
	if dec.More() || len(c.Key) > maxSort || c.RID < 1 { // row ids start at 1
		return nil, fmt.Errorf("bad cursor")
	}
	return &c, nil
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
