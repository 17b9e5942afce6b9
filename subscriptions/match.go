package subscriptions

import (
	"errors"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/priorflow/priorflow/fhir"
	"github.com/priorflow/priorflow/fhir/search"
)

// Matcher decides which subscriptions an event concerns. Criteria are FHIR
// search queries (FHIR R4 3.1.1) evaluated in memory against the event's
// resource with the registry's search parameter definitions, so a match
// means exactly what a search would have found.
type Matcher struct {
	reg   *fhir.Registry
	codec *fhir.Codec
	// changeTypes are the resource types whose changes are published.
	changeTypes []string
}

// NewMatcher returns a matcher for changes of changeTypes (ImagingStudy when
// empty).
func NewMatcher(reg *fhir.Registry, codec *fhir.Codec, changeTypes ...string) (*Matcher, error) {
	if reg == nil || codec == nil {
		return nil, errors.New("subscriptions matcher: registry and codec are required")
	}
	if len(changeTypes) == 0 {
		changeTypes = []string{"ImagingStudy"}
	}
	for _, t := range changeTypes {
		if reg.Type(t) == nil {
			return nil, errors.New("subscriptions matcher: change type " + t + " is not registered")
		}
	}
	return &Matcher{reg: reg, codec: codec, changeTypes: changeTypes}, nil
}

// Filter is a compiled subscription: it says whether an event concerns it.
type Filter struct {
	Sub   *Subscription
	kind  Kind
	typ   string
	query *search.Query // criteria on the resource (nil: any)
	// patient and modality filter TopicStudyAvailable.
	patient  []string
	modality []string
}

// Compile compiles s for matching.
func (m *Matcher) Compile(s *Subscription) (*Filter, error) { return m.compile(s) }

func (m *Matcher) compile(s *Subscription) (*Filter, error) {
	f := &Filter{Sub: s}
	switch s.Topic {
	case "":
		f.kind = KindResourceChanged
		if s.Criteria == "" {
			return nil, unprocessable("Subscription.criteria", "criteria is required")
		}
		return f, m.compileCriteria(f, s.Criteria, "Subscription.criteria")
	case TopicStudyChanged:
		f.kind, f.typ = KindResourceChanged, "ImagingStudy"
		if s.Criteria == "" {
			return f, nil
		}
		return f, m.compileCriteria(f, s.Criteria, "Subscription.criteria.extension")
	case TopicStudyAvailable:
		f.kind, f.typ = KindStudyAvailable, "ImagingStudy"
		if s.Criteria == "" {
			return f, nil
		}
		typ, vals, err := splitCriteria(s.Criteria)
		if err != nil || typ != "ImagingStudy" {
			return nil, unprocessable("Subscription.criteria.extension", "filter criteria of %s must be ImagingStudy?patient=...&modality=...", TopicStudyAvailable)
		}
		for k, vs := range vals {
			for _, v := range vs {
				for _, one := range strings.Split(v, ",") {
					switch k {
					case "patient":
						if !strings.Contains(one, "/") {
							one = "Patient/" + one
						}
						f.patient = append(f.patient, one)
					case "modality":
						if _, code, ok := strings.Cut(one, "|"); ok {
							one = code
						}
						f.modality = append(f.modality, one)
					default:
						return nil, unprocessable("Subscription.criteria.extension", "topic %s filters by patient and modality, not %s", TopicStudyAvailable, k)
					}
				}
			}
		}
		return f, nil
	}
	return nil, unprocessable("Subscription.criteria", "topic %s is not offered (%s, %s)", s.Topic, TopicStudyAvailable, TopicStudyChanged)
}

func (m *Matcher) compileCriteria(f *Filter, criteria, expr string) error {
	typ, vals, err := splitCriteria(criteria)
	if err != nil {
		return unprocessable(expr, "criteria %q is not Type?query", criteria)
	}
	if f.typ != "" && typ != f.typ {
		return unprocessable(expr, "criteria must be on %s", f.typ)
	}
	if !slices.Contains(m.changeTypes, typ) {
		return unprocessable(expr, "subscriptions on %s are not supported (%s)", typ, strings.Join(m.changeTypes, ", "))
	}
	rt := m.reg.Type(typ)
	q, err := search.Parse(m.reg, rt, vals, search.Options{})
	if err != nil {
		var fe *fhir.Error
		if errors.As(err, &fe) {
			return unprocessable(expr, "criteria: %s", fe.Message)
		}
		return unprocessable(expr, "criteria %q cannot be parsed", criteria)
	}
	if len(q.Include) > 0 || len(q.RevInclude) > 0 || len(q.Sort) > 0 {
		return unprocessable(expr, "criteria may not use _include, _revinclude or _sort")
	}
	for _, c := range q.Clauses {
		if c.Chain != nil || c.Param == fhir.ParamLastUpdated {
			return unprocessable(expr, "criteria may not use chains or _lastUpdated")
		}
	}
	f.typ, f.query = typ, q
	return nil
}

// Match returns the filters among fs that ev concerns. A resource change
// with a body is parsed once for all of them.
func (m *Matcher) Match(ev *Event, fs []*Filter) []*Filter {
	var res proto.Message
	parsed := false
	var out []*Filter
	for _, f := range fs {
		if f.kind != ev.Kind || f.typ != ev.FocusType {
			continue
		}
		switch ev.Kind {
		case KindStudyAvailable:
			if len(f.patient) > 0 && !slices.Contains(f.patient, ev.Patient) {
				continue
			}
			if len(f.modality) > 0 && !slices.ContainsFunc(f.modality, func(mod string) bool { return slices.Contains(ev.Modalities, mod) }) {
				continue
			}
		case KindResourceChanged:
			if f.query == nil || len(f.query.Clauses) == 0 {
				break
			}
			if !parsed {
				parsed = true
				if ev.Resource != nil {
					res, _, _ = m.codec.Parse(ev.Resource)
				}
			}
			if res == nil || !matchQuery(f.query, res) {
				continue
			}
		}
		out = append(out, f)
	}
	return out
}

// matchQuery evaluates the clauses (ANDed; values within one ORed) against
// res.
func matchQuery(q *search.Query, res proto.Message) bool {
	for i := range q.Clauses {
		if !matchClause(&q.Clauses[i], res) {
			return false
		}
	}
	return true
}

func matchClause(c *search.Clause, res proto.Message) bool {
	var have []fhir.Value
	if c.Param == fhir.ParamID {
		have = []fhir.Value{{Token: fhir.Token{Code: fhir.ID(res)}}}
	} else {
		have = c.Param.Values(res)
	}
	if c.Missing != nil {
		return (len(have) == 0) == *c.Missing
	}
	any := false
	for _, want := range c.Values {
		for _, h := range have {
			if matchValue(c, want, h) {
				any = true
			}
		}
	}
	if c.Modifier == search.ModNot {
		return !any
	}
	return any
}

func matchValue(c *search.Clause, want search.Value, h fhir.Value) bool {
	switch c.Param.Type {
	case fhir.ParamToken:
		if want.SystemSet && want.Token.System != h.Token.System {
			return false
		}
		return want.Token.Code == "" || want.Token.Code == h.Token.Code
	case fhir.ParamReference:
		if want.Ref.URL != "" && want.Ref.ID == "" {
			return want.Ref.URL == h.Ref.URL
		}
		t := want.Ref.Type
		if t == "" {
			t = c.TargetType
		}
		return want.Ref.ID == h.Ref.ID && (t == "" || t == h.Ref.Type)
	case fhir.ParamString:
		got, w := fhir.NormalizeString(h.String), fhir.NormalizeString(want.String)
		switch c.Modifier {
		case search.ModExact:
			return h.String == want.String
		case search.ModContains:
			return strings.Contains(got, w)
		}
		return strings.HasPrefix(got, w)
	case fhir.ParamURI:
		return h.String == want.String
	case fhir.ParamNumber:
		return h.Number == want.Number
	case fhir.ParamDate:
		w, g := want.Date, h.Date
		switch want.Prefix {
		case search.PrefixGt, search.PrefixSa:
			return g.End.After(w.End)
		case search.PrefixLt, search.PrefixEb:
			return g.Start.Before(w.Start)
		case search.PrefixGe:
			return !g.End.Before(w.Start) && g.End.After(w.Start)
		case search.PrefixLe:
			return g.Start.Before(w.End)
		case search.PrefixNe:
			return !(!g.Start.Before(w.Start) && !g.End.After(w.End))
		}
		// eq (and ap): the value's range lies within the parameter's.
		return !g.Start.Before(w.Start) && !g.End.After(w.End)
	}
	return false
}
