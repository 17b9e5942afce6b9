package fhir

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	apb "github.com/google/fhir/go/proto/google/fhir/proto/annotations_go_proto"
	dpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/datatypes_go_proto"
	rpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/bundle_and_contained_resource_go_proto"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// The index extraction below evaluates the small FHIRPath subset used by the
// R4 search parameter definitions we register: element navigation and "|"
// unions. No FHIRPath engine for the google/fhir protos exists for Go, and the
// subset is enough for every parameter whose expression is a plain path;
// parameters with where()/resolve() are declared with Targets instead.

var containedFields = sync.OnceValue(func() map[string]protoreflect.FieldDescriptor {
	od := (&rpb.ContainedResource{}).ProtoReflect().Descriptor().Oneofs().ByName("oneof_resource")
	out := map[string]protoreflect.FieldDescriptor{}
	for i := 0; i < od.Fields().Len(); i++ {
		fd := od.Fields().Get(i)
		out[string(fd.Message().Name())] = fd
	}
	return out
})

// newResource returns an empty proto of the named R4 resource type.
func newResource(typ string) (proto.Message, bool) {
	fd, ok := containedFields()[typ]
	if !ok {
		return nil, false
	}
	return (&rpb.ContainedResource{}).ProtoReflect().NewField(fd).Message().Interface(), true
}

// IsResourceType reports whether name is an R4 resource type.
func IsResourceType(name string) bool {
	_, ok := containedFields()[name]
	return ok
}

// Unwrap returns the resource inside a ContainedResource, as jsonformat
// produces it, with its type name.
func Unwrap(cr *rpb.ContainedResource) (proto.Message, string) {
	m := cr.ProtoReflect()
	fd := m.WhichOneof(m.Descriptor().Oneofs().ByName("oneof_resource"))
	if fd == nil {
		return nil, ""
	}
	return m.Get(fd).Message().Interface(), string(fd.Message().Name())
}

// Wrap puts a typed resource into a ContainedResource.
func Wrap(res proto.Message) (*rpb.ContainedResource, error) {
	name := string(res.ProtoReflect().Descriptor().Name())
	fd, ok := containedFields()[name]
	if !ok {
		return nil, fmt.Errorf("wrap: %s is not an R4 resource", name)
	}
	cr := &rpb.ContainedResource{}
	cr.ProtoReflect().Set(fd, protoreflect.ValueOfMessage(res.ProtoReflect()))
	return cr, nil
}

func compilePath(typ, expr string) ([][]string, error) {
	var out [][]string
	for _, alt := range strings.Split(expr, "|") {
		steps := strings.Split(strings.TrimSpace(alt), ".")
		if len(steps) < 2 || (steps[0] != typ && steps[0] != "Resource") {
			return nil, fmt.Errorf("path %q must start with %s", alt, typ)
		}
		res, ok := newResource(typ)
		if !ok {
			return nil, fmt.Errorf("unknown type %s", typ)
		}
		md := res.ProtoReflect().Descriptor()
		for _, s := range steps[1:] {
			fd := fieldByName(md, s)
			if fd == nil || fd.Message() == nil {
				return nil, fmt.Errorf("path %q: %s has no element %s", alt, md.Name(), s)
			}
			md = fd.Message()
		}
		out = append(out, steps)
	}
	return out, nil
}

// fieldByName finds the proto field for a FHIR element name. The protos use
// the FHIR name in snake case, with a suffix where it clashes with a keyword
// (Encounter.class is class_value).
func fieldByName(md protoreflect.MessageDescriptor, name string) protoreflect.FieldDescriptor {
	fields := md.Fields()
	if fd := fields.ByJSONName(name); fd != nil {
		return fd
	}
	snake := toSnake(name)
	if fd := fields.ByName(protoreflect.Name(snake)); fd != nil {
		return fd
	}
	return fields.ByName(protoreflect.Name(snake + "_value"))
}

func toSnake(s string) string {
	var b strings.Builder
	for i, r := range s {
		if r >= 'A' && r <= 'Z' {
			if i > 0 {
				b.WriteByte('_')
			}
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}

func isChoice(md protoreflect.MessageDescriptor) bool {
	return md.Oneofs().ByName("choice") != nil && md.Fields().Len() == md.Oneofs().ByName("choice").Fields().Len()
}

func unwrapChoice(m protoreflect.Message) protoreflect.Message {
	if !isChoice(m.Descriptor()) {
		return m
	}
	fd := m.WhichOneof(m.Descriptor().Oneofs().ByName("choice"))
	if fd == nil || fd.Message() == nil {
		return m
	}
	return m.Get(fd).Message()
}

func appendValues(out []Value, p *SearchParam, m protoreflect.Message, path []string) []Value {
	if len(path) == 0 {
		return appendLeaf(out, p, unwrapChoice(m))
	}
	fd := fieldByName(m.Descriptor(), path[0])
	if fd == nil || !m.Has(fd) {
		return out
	}
	if fd.IsList() {
		l := m.Get(fd).List()
		for i := 0; i < l.Len(); i++ {
			out = appendValues(out, p, l.Get(i).Message(), path[1:])
		}
		return out
	}
	return appendValues(out, p, m.Get(fd).Message(), path[1:])
}

func appendLeaf(out []Value, p *SearchParam, m protoreflect.Message) []Value {
	switch v := m.Interface().(type) {
	case *dpb.Identifier:
		if p.Type == ParamToken && v.GetValue().GetValue() != "" {
			out = append(out, Value{Token: Token{System: v.GetSystem().GetValue(), Code: v.GetValue().GetValue()}})
		}
	case *dpb.Coding:
		if c := v.GetCode().GetValue(); c != "" && p.Type == ParamToken {
			out = append(out, Value{Token: Token{System: v.GetSystem().GetValue(), Code: c}})
		}
	case *dpb.CodeableConcept:
		for _, c := range v.GetCoding() {
			out = appendLeaf(out, p, c.ProtoReflect())
		}
	case *dpb.Reference:
		if p.Type == ParamReference {
			if r, ok := ReferenceOf(v); ok && (len(p.Targets) == 0 || r.Type == "" || contains(p.Targets, r.Type)) {
				out = append(out, Value{Ref: r})
			}
		}
	case *dpb.HumanName:
		if p.Type == ParamString {
			out = appendStrings(out, v.GetText().GetValue(), v.GetFamily().GetValue())
			for _, s := range [][]*dpb.String{v.GetGiven(), v.GetPrefix(), v.GetSuffix()} {
				for _, x := range s {
					out = appendStrings(out, x.GetValue())
				}
			}
		}
	case *dpb.Address:
		if p.Type == ParamString {
			out = appendStrings(out, v.GetText().GetValue(), v.GetCity().GetValue(), v.GetDistrict().GetValue(),
				v.GetState().GetValue(), v.GetPostalCode().GetValue(), v.GetCountry().GetValue())
			for _, l := range v.GetLine() {
				out = appendStrings(out, l.GetValue())
			}
		}
	case *dpb.ContactPoint:
		if p.Type == ParamToken && v.GetValue().GetValue() != "" {
			out = append(out, Value{Token: Token{Code: v.GetValue().GetValue()}})
		}
	case *dpb.Date:
		if r, ok := dateRange(v.GetValueUs(), v.GetTimezone(), precisionOf(v.GetPrecision().String())); ok {
			out = append(out, Value{Date: r})
		}
	case *dpb.DateTime:
		if r, ok := dateRange(v.GetValueUs(), v.GetTimezone(), precisionOf(v.GetPrecision().String())); ok {
			out = append(out, Value{Date: r})
		}
	case *dpb.Instant:
		if r, ok := dateRange(v.GetValueUs(), v.GetTimezone(), precisionOf(v.GetPrecision().String())); ok {
			out = append(out, Value{Date: r})
		}
	case *dpb.Period:
		r := DateRange{Start: MinTime, End: MaxTime}
		if s := v.GetStart(); s != nil {
			if sr, ok := dateRange(s.GetValueUs(), s.GetTimezone(), precisionOf(s.GetPrecision().String())); ok {
				r.Start = sr.Start
			}
		}
		if e := v.GetEnd(); e != nil {
			if er, ok := dateRange(e.GetValueUs(), e.GetTimezone(), precisionOf(e.GetPrecision().String())); ok {
				r.End = er.End
			}
		}
		if v.GetStart() != nil || v.GetEnd() != nil {
			out = append(out, Value{Date: r})
		}
	case *dpb.Boolean:
		if p.Type == ParamToken {
			out = append(out, Value{Token: Token{Code: strconv.FormatBool(v.GetValue())}})
		}
	case *dpb.Integer:
		out = append(out, Value{Number: float64(v.GetValue())})
	case *dpb.PositiveInt:
		out = append(out, Value{Number: float64(v.GetValue())})
	case *dpb.UnsignedInt:
		out = append(out, Value{Number: float64(v.GetValue())})
	case *dpb.Decimal:
		if f, err := strconv.ParseFloat(v.GetValue(), 64); err == nil {
			out = append(out, Value{Number: f})
		}
	default:
		out = appendPrimitive(out, p, m)
	}
	return out
}

// appendPrimitive handles string-valued primitives (string, code, id, uri,
// oid, canonical ...) and the typed code enums the protos generate for
// required value sets.
func appendPrimitive(out []Value, p *SearchParam, m protoreflect.Message) []Value {
	fd := m.Descriptor().Fields().ByName("value")
	if fd == nil {
		return out
	}
	var s string
	switch fd.Kind() {
	case protoreflect.StringKind:
		s = m.Get(fd).String()
	case protoreflect.EnumKind:
		s = enumCode(fd.Enum().Values().ByNumber(m.Get(fd).Enum()))
	default:
		return out
	}
	if s == "" {
		return out
	}
	switch p.Type {
	case ParamToken:
		out = append(out, Value{Token: Token{Code: s}})
	case ParamString, ParamURI:
		out = append(out, Value{String: s})
	}
	return out
}

// enumCode turns a generated code enum value (ENTERED_IN_ERROR) back into its
// FHIR code (entered-in-error), honouring the original-code annotation for
// codes that do not survive that transformation.
func enumCode(ev protoreflect.EnumValueDescriptor) string {
	if ev == nil || ev.Number() == 0 {
		return ""
	}
	if oc := proto.GetExtension(ev.Options(), apb.E_FhirOriginalCode).(string); oc != "" {
		return oc
	}
	return strings.ReplaceAll(strings.ToLower(string(ev.Name())), "_", "-")
}

func appendStrings(out []Value, ss ...string) []Value {
	for _, s := range ss {
		if s != "" {
			out = append(out, Value{String: s})
		}
	}
	return out
}

// ReferenceOf returns the target of a Reference. jsonformat normalizes
// relative references ("Patient/123") into typed id fields; absolute URLs stay
// in uri and are split when they end in Type/id.
func ReferenceOf(r *dpb.Reference) (Ref, bool) {
	m := r.ProtoReflect()
	fd := m.WhichOneof(m.Descriptor().Oneofs().ByName("reference"))
	if fd == nil {
		return Ref{}, false
	}
	switch fd.Name() {
	case "uri":
		u := r.GetUri().GetValue()
		typ, id, ok := splitRefURL(u)
		if !ok {
			return Ref{URL: u}, u != ""
		}
		if strings.Contains(u, "://") {
			return Ref{Type: typ, ID: id, URL: u}, true
		}
		return Ref{Type: typ, ID: id}, true
	case "fragment":
		return Ref{}, false
	}
	name := strings.TrimSuffix(string(fd.Name()), "_id")
	id := m.Get(fd).Message().Interface().(*dpb.ReferenceId)
	return Ref{Type: snakeToCamel(name), ID: id.GetValue()}, true
}

// splitRefURL splits "[base/]Type/id[/_history/n]".
func splitRefURL(u string) (typ, id string, ok bool) {
	parts := strings.Split(u, "/")
	if n := len(parts); n >= 4 && parts[n-2] == "_history" {
		parts = parts[:n-2]
	}
	n := len(parts)
	if n < 2 {
		return "", "", false
	}
	typ, id = parts[n-2], parts[n-1]
	if _, known := containedFields()[typ]; !known || !ValidID(id) {
		return "", "", false
	}
	return typ, id, true
}

func snakeToCamel(s string) string {
	var b strings.Builder
	up := true
	for _, r := range s {
		if r == '_' {
			up = true
			continue
		}
		if up && r >= 'a' && r <= 'z' {
			r -= 'a' - 'A'
		}
		up = false
		b.WriteRune(r)
	}
	return b.String()
}

// ValidID reports whether s is a valid FHIR id: [A-Za-z0-9\-\.]{1,64}.
func ValidID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// Bounds of open-ended ranges, inside PostgreSQL's timestamptz range.
var (
	MinTime = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)
	MaxTime = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)
)

// Precision of a date or time value.
type Precision int

const (
	PrecisionYear Precision = iota
	PrecisionMonth
	PrecisionDay
	PrecisionMinute
	PrecisionSecond
	PrecisionMillisecond
	PrecisionMicrosecond
)

func precisionOf(name string) Precision {
	switch name {
	case "YEAR":
		return PrecisionYear
	case "MONTH":
		return PrecisionMonth
	case "DAY":
		return PrecisionDay
	case "MINUTE":
		return PrecisionMinute
	case "MILLISECOND":
		return PrecisionMillisecond
	case "MICROSECOND":
		return PrecisionMicrosecond
	}
	return PrecisionSecond
}

// Range returns the implicit range [t, t+1 unit of precision).
func Range(t time.Time, p Precision) DateRange {
	var end time.Time
	switch p {
	case PrecisionYear:
		end = t.AddDate(1, 0, 0)
	case PrecisionMonth:
		end = t.AddDate(0, 1, 0)
	case PrecisionDay:
		end = t.AddDate(0, 0, 1)
	case PrecisionMinute:
		end = t.Add(time.Minute)
	case PrecisionSecond:
		end = t.Add(time.Second)
	case PrecisionMillisecond:
		end = t.Add(time.Millisecond)
	default:
		end = t.Add(time.Microsecond)
	}
	return DateRange{Start: t, End: end}
}

func dateRange(us int64, tz string, p Precision) (DateRange, bool) {
	loc := time.UTC
	if tz != "" && tz != "Z" && tz != "UTC" {
		if l, err := parseOffset(tz); err == nil {
			loc = l
		} else if l, err := time.LoadLocation(tz); err == nil {
			loc = l
		}
	}
	t := time.UnixMicro(us).In(loc)
	return Range(t, p), true
}

func parseOffset(tz string) (*time.Location, error) {
	t, err := time.Parse("-07:00", tz)
	if err != nil {
		return nil, err
	}
	_, off := t.Zone()
	return time.FixedZone(tz, off), nil
}
