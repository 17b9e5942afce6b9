package fhir

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
)

// ParamType is a search parameter type (FHIR R4 3.1.1.4 "search parameter types").
type ParamType string

const (
	ParamToken     ParamType = "token"
	ParamString    ParamType = "string"
	ParamDate      ParamType = "date"
	ParamReference ParamType = "reference"
	ParamURI       ParamType = "uri"
	ParamNumber    ParamType = "number"
)

// SearchParam is one search parameter of a resource type. Values are
// extracted from the parsed resource at write time by evaluating Path (a
// FHIRPath subset: dotted element names joined by " | ") against the R4 proto.
type SearchParam struct {
	Name        string
	Type        ParamType
	Description string
	// Path is the FHIRPath expression from the R4 definition, restricted to
	// element navigation and unions, e.g. "ImagingStudy.series.modality".
	Path string
	// Targets restricts reference parameters to these resource types (a
	// reference to another type is not indexed under this parameter). Empty
	// means any type.
	Targets []string
	// Definition is the canonical URL of the SearchParameter resource.
	Definition string

	paths [][]string
}

// Values extracts the index values of p from res (a typed R4 resource proto).
func (p *SearchParam) Values(res proto.Message) []Value {
	var out []Value
	for _, path := range p.paths {
		out = appendValues(out, p, res.ProtoReflect(), path[1:])
	}
	return dedupe(out)
}

// Value is one extracted index value; the field matching the parameter's type
// is set.
type Value struct {
	Token  Token
	String string
	Date   DateRange
	Ref    Ref
	Number float64
}

// Token is a coded value: a Coding, an Identifier, or a code. System is empty
// when the element has none.
type Token struct {
	System string
	Code   string
}

// DateRange is the implicit range of a date, dateTime, instant or Period per
// FHIR R4 search 3.1.1.4.2: [Start, End) at the precision given.
type DateRange struct {
	Start time.Time
	End   time.Time
}

// Ref is a resource reference. Type and ID are set for relative (and
// resolvable absolute) references; URL keeps the literal for absolute ones.
type Ref struct {
	Type string
	ID   string
	URL  string
}

// Local returns r as the server whose FHIR base is base reads it: an
// absolute URL under base is the local Type/id (FHIR R4 references.html:
// a relative reference is relative to the server's base, so the two name
// one resource), and any other absolute URL keeps only its URL, so that
// another site's Patient/1 is never taken for this server's Patient/1. The
// search index and the in-memory evaluation of criteria both read
// references through it. With base "" no absolute URL is local.
func (r Ref) Local(base string) Ref {
	if r.URL == "" {
		return r
	}
	if rest, under := UnderBase(r.URL, base); under && r.Type != "" {
		if own := r.Type + "/" + r.ID; rest == own || strings.HasPrefix(rest, own+"/_history/") {
			return Ref{Type: r.Type, ID: r.ID}
		}
	}
	return Ref{URL: r.URL}
}

// UnderBase reports whether the literal reference ref is an absolute URL
// under base, the server's FHIR base, and returns it relative to base if
// so ("Patient/1" for "[base]/Patient/1"). With base "" nothing is under
// it. Every reader of references that has only their text (search values,
// the FHIR intake, the archive) decides with it what Local decides.
func UnderBase(ref, base string) (rest string, under bool) {
	if base == "" {
		return ref, false
	}
	return strings.CutPrefix(ref, strings.TrimSuffix(base, "/")+"/")
}

// ResourceType describes a resource type the server supports.
type ResourceType struct {
	Name string
	// Params are the type's search parameters, without the common ones
	// (_id, _lastUpdated) which every type has.
	Params []*SearchParam
	// Sorts lists the parameters usable in _sort (besides _id, _lastUpdated).
	Sorts []string
	// Includes lists the reference parameters usable in _include.
	Includes []string
	// ReadOnly types (e.g. AuditEvent) accept no update or delete.
	ReadOnly bool

	byName map[string]*SearchParam
}

// Param returns the named search parameter of t, or nil.
func (t *ResourceType) Param(name string) *SearchParam { return t.byName[name] }

// Common search parameters every type supports (FHIR R4 3.1.1.5.2).
var (
	ParamID          = &SearchParam{Name: "_id", Type: ParamToken, Description: "Logical id of this artifact", Path: "Resource.id", Definition: "http://hl7.org/fhir/SearchParameter/Resource-id"}
	ParamLastUpdated = &SearchParam{Name: "_lastUpdated", Type: ParamDate, Description: "When the resource version last changed", Path: "Resource.meta.lastUpdated", Definition: "http://hl7.org/fhir/SearchParameter/Resource-lastUpdated"}
)

// Registry holds the resource types the server supports. It is built once at
// start and read concurrently afterwards.
type Registry struct {
	types map[string]*ResourceType
}

// NewRegistry validates and indexes the given resource types.
func NewRegistry(types ...*ResourceType) (*Registry, error) {
	r := &Registry{types: map[string]*ResourceType{}}
	for _, t := range types {
		if _, dup := r.types[t.Name]; dup {
			return nil, fmt.Errorf("registry: duplicate resource type %s", t.Name)
		}
		if _, ok := newResource(t.Name); !ok {
			return nil, fmt.Errorf("registry: %s is not an R4 resource type", t.Name)
		}
		t.byName = map[string]*SearchParam{ParamID.Name: ParamID, ParamLastUpdated.Name: ParamLastUpdated}
		for _, p := range t.Params {
			if _, dup := t.byName[p.Name]; dup {
				return nil, fmt.Errorf("registry: %s: duplicate parameter %s", t.Name, p.Name)
			}
			paths, err := compilePath(t.Name, p.Path)
			if err != nil {
				return nil, fmt.Errorf("registry: %s.%s: %w", t.Name, p.Name, err)
			}
			p.paths = paths
			t.byName[p.Name] = p
		}
		for _, s := range t.Sorts {
			if t.byName[s] == nil {
				return nil, fmt.Errorf("registry: %s: sort on unknown parameter %s", t.Name, s)
			}
		}
		for _, s := range t.Includes {
			if p := t.byName[s]; p == nil || p.Type != ParamReference {
				return nil, fmt.Errorf("registry: %s: include on non-reference parameter %s", t.Name, s)
			}
		}
		r.types[t.Name] = t
	}
	return r, nil
}

// Type returns the named resource type, or nil when it is not supported.
func (r *Registry) Type(name string) *ResourceType { return r.types[name] }

// Types returns the supported types sorted by name.
func (r *Registry) Types() []*ResourceType {
	out := make([]*ResourceType, 0, len(r.types))
	for _, t := range r.types {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// RevIncludes lists "Type:param" pairs whose reference parameter may point at
// target, for _revinclude.
func (r *Registry) RevIncludes(target string) []string {
	var out []string
	for _, t := range r.Types() {
		for _, inc := range t.Includes {
			p := t.byName[inc]
			if len(p.Targets) == 0 || slices.Contains(p.Targets, target) {
				out = append(out, t.Name+":"+inc)
			}
		}
	}
	return out
}

func dedupe(vs []Value) []Value {
	if len(vs) < 2 {
		return vs
	}
	seen := make(map[Value]bool, len(vs))
	out := vs[:0]
	for _, v := range vs {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}
