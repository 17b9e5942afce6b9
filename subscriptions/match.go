package subscriptions

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/priorflow/priorflow/fhir"
	"github.com/priorflow/priorflow/fhir/search"
	"github.com/priorflow/priorflow/internal/printable"
)

// Matcher decides which subscriptions an event concerns. Criteria are FHIR
// search queries (FHIR R4 3.1.1) evaluated in memory against the event's
// resource (search.Query.Matches) with the registry's search parameter
// definitions, so a match means exactly what a search would have found;
// TestMatcher_SameAsSearch holds the two together.
type Matcher struct {
	reg   *fhir.Registry
	codec *fhir.Codec
	// base is the server's FHIR base: absolute references under it are
	// local, in criteria and in resources, as they are to a search.
	base string
	// changeTypes are the resource types whose changes are published.
	changeTypes []string
}

// NewMatcher returns a matcher for changes of changeTypes (ImagingStudy when
// empty) on the server whose FHIR base URL is base.
func NewMatcher(reg *fhir.Registry, codec *fhir.Codec, base string, changeTypes ...string) (*Matcher, error) {
	if reg == nil || codec == nil {
		return nil, errors.New("subscriptions matcher: registry and codec are required")
	}
	if !strings.HasPrefix(base, "http://") && !strings.HasPrefix(base, "https://") {
		return nil, fmt.Errorf("subscriptions matcher: FHIR base %q is not an absolute http(s) URL", base)
	}
	if len(changeTypes) == 0 {
		changeTypes = []string{"ImagingStudy"}
	}
	for _, t := range changeTypes {
		if reg.Type(t) == nil {
			return nil, errors.New("subscriptions matcher: change type " + t + " is not registered")
		}
	}
	return &Matcher{reg: reg, codec: codec, base: strings.TrimSuffix(base, "/"), changeTypes: changeTypes}, nil
}

// Filter is a compiled subscription: it says whether an event concerns it.
type Filter struct {
	Sub   *Subscription
	kind  Kind
	typ   string
	query *search.Query // criteria on the resource (nil: any)
	// patient and modality filter TopicStudyAvailable: each inner list is
	// one parameter, whose values are ORed; the parameters are ANDed.
	patient  [][]string
	modality [][]string
}

// Compile compiles s for matching.
func (m *Matcher) Compile(s *Subscription) (*Filter, error) { return m.compile(s) }

// CriteriaError is the error, for its status and its resource, of a stored
// subscription whose criteria Compile no longer accepts (err).
func CriteriaError(err error) string {
	msg := err.Error()
	var fe *fhir.Error
	if errors.As(err, &fe) {
		msg = fe.Message
	}
	return printable.Truncate("this server no longer accepts the subscription's criteria: "+printable.Replace(msg), 500)
}

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
		return f, m.compileStudyAvailable(f, vals)
	}
	return nil, unprocessable("Subscription.criteria", "topic %s is not offered (%s, %s)", s.Topic, TopicStudyAvailable, TopicStudyChanged)
}

// compileStudyAvailable reads the patient and modality filter of
// TopicStudyAvailable as the search parameters of ImagingStudy they are.
func (m *Matcher) compileStudyAvailable(f *Filter, vals url.Values) error {
	const expr = "Subscription.criteria.extension"
	for k := range vals {
		if k != "patient" && k != "modality" {
			return unprocessable(expr, "topic %s filters by patient and modality, not %s", TopicStudyAvailable, k)
		}
	}
	q, err := m.parseCriteria("ImagingStudy", vals, expr, "filter criteria", "filter criteria cannot be parsed")
	if err != nil {
		return err
	}
	for _, c := range q.Clauses {
		if c.Modifier != search.ModNone || c.Missing != nil {
			return unprocessable(expr, "topic %s filters take no modifiers", TopicStudyAvailable)
		}
		var oneOf []string
		switch c.Param.Name {
		case "patient":
			for _, v := range c.Values {
				// A URL on another server names no patient of this
				// one's; kept as it is, it matches no event.
				if v.Ref.URL != "" {
					oneOf = append(oneOf, v.Ref.URL)
				} else {
					oneOf = append(oneOf, "Patient/"+v.Ref.ID)
				}
			}
			f.patient = append(f.patient, oneOf)
		case "modality":
			// Events carry DICOM modality codes, and the system is not
			// compared, as it never was: subscriptions stored with
			// DCM|CT keep firing.
			for _, v := range c.Values {
				oneOf = append(oneOf, v.Token.Code)
			}
			f.modality = append(f.modality, oneOf)
		}
	}
	return nil
}

// parseCriteria parses vals as a search on typ would, with the search's
// message as an unprocessable error at expr ("<what>: <message>").
func (m *Matcher) parseCriteria(typ string, vals url.Values, expr, what, otherwise string) (*search.Query, error) {
	q, err := search.Parse(m.reg, m.reg.Type(typ), vals, search.Options{BaseURL: m.base})
	if err != nil {
		var fe *fhir.Error
		if errors.As(err, &fe) {
			return nil, unprocessable(expr, "%s: %s", what, fe.Message)
		}
		return nil, unprocessable(expr, "%s", otherwise)
	}
	return q, nil
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
	q, err := m.parseCriteria(typ, vals, expr, "criteria", fmt.Sprintf("criteria %q cannot be parsed", criteria))
	if err != nil {
		return err
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
			if !f.availableMatches(ev) {
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
			if res == nil || !f.query.Matches(res, m.base) {
				continue
			}
		}
		out = append(out, f)
	}
	return out
}

// availableMatches applies a TopicStudyAvailable filter to ev.
func (f *Filter) availableMatches(ev *Event) bool {
	for _, oneOf := range f.patient {
		if !slices.Contains(oneOf, ev.Patient) {
			return false
		}
	}
	for _, oneOf := range f.modality {
		if !slices.ContainsFunc(oneOf, func(mod string) bool { return slices.Contains(ev.Modalities, mod) }) {
			return false
		}
	}
	return true
}
