package search

import (
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/priorflow/priorflow/fhir"
)

// Matches evaluates q's clauses against one resource in memory: what a
// subscription does with each change. It must find what a search of the
// store finds (fhir/postgres compiles the same semantics into SQL; a test
// of the subscriptions package holds the two together). base is the
// server's FHIR base, under which absolute references are local, as in
// Options.BaseURL. Chains (they read other resources) and _lastUpdated
// (kept by the store beside the resource, not among its index values) are
// not evaluated here: such a clause never matches, and a caller refuses
// them beforehand.
func (q *Query) Matches(res proto.Message, base string) bool {
	for i := range q.Clauses {
		if !q.Clauses[i].matches(res, base) {
			return false
		}
	}
	return true
}

func (c *Clause) matches(res proto.Message, base string) bool {
	if c.Chain != nil || c.Param == fhir.ParamLastUpdated {
		return false
	}
	var have []fhir.Value
	if c.Param == fhir.ParamID {
		have = []fhir.Value{{Token: fhir.Token{Code: fhir.ID(res)}}}
	} else {
		have = c.Param.Values(res)
	}
	if c.Missing != nil {
		return (len(have) == 0) == *c.Missing
	}
	found := false
	for _, want := range c.Values {
		for _, h := range have {
			if c.matchValue(want, h, base) {
				found = true
			}
		}
	}
	if c.Modifier == ModNot {
		return !found
	}
	return found
}

func (c *Clause) matchValue(want Value, h fhir.Value, base string) bool {
	switch c.Param.Type {
	case fhir.ParamToken:
		if want.SystemSet && want.Token.System != h.Token.System {
			return false
		}
		return want.Token.Code == "" || want.Token.Code == h.Token.Code
	case fhir.ParamReference:
		got := h.Ref.Local(base)
		switch {
		case want.Ref.URL != "":
			return want.Ref.URL == got.URL
		case got.URL != "":
			return false
		}
		t := want.Ref.Type
		if t == "" {
			t = c.TargetType
		}
		return want.Ref.ID == got.ID && (t == "" || t == got.Type)
	case fhir.ParamString:
		switch c.Modifier {
		case ModExact:
			return h.String == want.String
		case ModContains:
			return strings.Contains(fhir.NormalizeString(h.String), fhir.NormalizeString(want.String))
		}
		return strings.HasPrefix(fhir.NormalizeString(h.String), fhir.NormalizeString(want.String))
	case fhir.ParamURI:
		return h.String == want.String
	case fhir.ParamNumber:
		return want.matchNumber(h.Number)
	case fhir.ParamDate:
		return want.matchDate(h.Date)
	}
	return false
}

// matchDate compares the target's range [lo, hi) with the search value's
// [slo, shi) per FHIR R4 3.1.1.4.1 ("the range above the search value
// intersects the range of the target value", ...).
func (v Value) matchDate(target fhir.DateRange) bool {
	lo, hi := target.Start, target.End
	slo, shi := v.Date.Start, v.Date.End
	contained := !lo.Before(slo) && !hi.After(shi)
	switch v.Prefix {
	case PrefixNe:
		return !contained
	case PrefixGt:
		return hi.After(shi)
	case PrefixLt:
		return lo.Before(slo)
	case PrefixGe:
		return hi.After(shi) || contained
	case PrefixLe:
		return lo.Before(slo) || contained
	case PrefixSa:
		return !lo.Before(shi)
	case PrefixEb:
		return !hi.After(slo)
	case PrefixAp:
		// The parser widened the value's range; any overlap is near.
		return lo.Before(shi) && hi.After(slo)
	}
	return contained
}

func (v Value) matchNumber(n float64) bool {
	switch v.Prefix {
	case PrefixNe:
		return n != v.Number
	case PrefixGt, PrefixSa:
		return n > v.Number
	case PrefixLt, PrefixEb:
		return n < v.Number
	case PrefixGe:
		return n >= v.Number
	case PrefixLe:
		return n <= v.Number
	}
	return n == v.Number
}
