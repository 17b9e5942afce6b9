package fhir

import (
	"bytes"
	"encoding/json"
	"maps"
	"slices"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// maxSplicedFields bounds the top-level fields in which a resource of a run
// may differ from the run's first and still be printed by splicing; beyond
// it printing the resource whole costs about as much.
const maxSplicedFields = 4

// MarshalOwnedRun prints resources as MarshalOwned prints each, faster when
// they are alike: the AuditEvents of one access differ only in their id and
// entities. The first resource is printed whole; a later one of the same
// type that differs from it in a few top-level fields is printed as the
// first's JSON with those fields' members replaced by what printing them
// alone gives. jsonformat prints every element on its own and writes an
// object's members in key order, so the two are the same bytes
// (TestMarshalOwnedRun_SameAsMarshal and its fuzz target hold them to it).
// As MarshalOwned, it takes the resources over: they must not be printed
// again or have their search values read afterwards.
func (c *Codec) MarshalOwnedRun(res []proto.Message) ([][]byte, error) {
	out := make([][]byte, len(res))
	if len(res) == 0 {
		return out, nil
	}
	first := res[0].ProtoReflect()
	// Which fields each resource does not share with the first, found
	// before anything is printed: printing changes references in place.
	diffs := make([][]protoreflect.FieldDescriptor, len(res))
	if len(res) > 1 {
		base, ok := encodeFields(first)
		if !ok {
			base = nil
		}
		for i := 1; i < len(res); i++ {
			diffs[i] = differingFields(base, first.Descriptor(), res[i].ProtoReflect())
		}
	}
	// The first's own members for those fields, printed from a copy of
	// them, to know which keys the splice replaces.
	firstKeys := map[string][]string{}
	for i := 1; i < len(res); i++ {
		d := diffs[i]
		if d == nil {
			continue
		}
		k := fieldsKey(d)
		if _, ok := firstKeys[k]; ok {
			continue
		}
		part, err := c.printFields(first, d, true)
		if err != nil {
			return nil, err
		}
		if part == nil {
			firstKeys[k] = nil
			continue
		}
		firstKeys[k] = slices.Collect(maps.Keys(part))
	}
	body, err := c.MarshalOwned(res[0])
	if err != nil {
		return nil, err
	}
	out[0] = body
	var members map[string]json.RawMessage // of the first, parsed on first use
	for i := 1; i < len(res); i++ {
		if out[i], err = c.spliced(res[i], diffs[i], firstKeys, body, &members); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// spliced prints m, which differs from the run's first resource (printed
// as body) in the fields d, by splicing; or whole when it cannot.
func (c *Codec) spliced(m proto.Message, d []protoreflect.FieldDescriptor, firstKeys map[string][]string,
	body []byte, members *map[string]json.RawMessage) ([]byte, error) {
	if d == nil {
		return c.MarshalOwned(m)
	}
	old, ok := firstKeys[fieldsKey(d)]
	if !ok || old == nil {
		return c.MarshalOwned(m)
	}
	if len(d) == 0 {
		return slices.Clone(body), nil
	}
	if *members == nil {
		if err := json.Unmarshal(body, members); err != nil {
			return c.MarshalOwned(m)
		}
	}
	part, err := c.printFields(m.ProtoReflect(), d, false)
	if err != nil {
		return nil, err
	}
	if part == nil {
		return c.MarshalOwned(m)
	}
	merged := maps.Clone(*members)
	for _, k := range old {
		delete(merged, k)
	}
	maps.Copy(merged, part)
	return compactObject(merged), nil
}

// printFields prints the fields d of m alone, as the members of a resource
// of m's type holding nothing else, and returns them by key (without
// resourceType). With copyFields the fields are printed from a copy, so
// that m stays as it is. It returns nil when the result cannot be spliced.
func (c *Codec) printFields(m protoreflect.Message, d []protoreflect.FieldDescriptor, copyFields bool) (map[string]json.RawMessage, error) {
	only := m.New()
	for _, fd := range d {
		if !m.Has(fd) {
			continue
		}
		v := m.Get(fd)
		if copyFields {
			// A copy of the field alone: printing rewrites references in
			// place.
			tmp := m.New()
			tmp.Set(fd, v)
			v = proto.Clone(tmp.Interface()).ProtoReflect().Get(fd)
		}
		only.Set(fd, v)
	}
	b, err := c.MarshalOwned(only.Interface())
	if err != nil {
		return nil, err
	}
	var part map[string]json.RawMessage
	if err := json.Unmarshal(b, &part); err != nil {
		return nil, nil
	}
	if string(part["resourceType"]) != `"`+string(m.Descriptor().Name())+`"` {
		return nil, nil
	}
	delete(part, "resourceType")
	return part, nil
}

// fieldBytes are the deterministic wire encodings of a message's top-level
// fields, one per field (nil when unset). Comparing them is how the fields
// of a run are compared: equal messages encode alike, and encoding goes
// through generated code where proto.Equal walks by reflection (it was a
// third of MarshalOwnedRun).
type fieldBytes [][]byte

var deterministic = proto.MarshalOptions{Deterministic: true}

func encodeFields(m protoreflect.Message) (fieldBytes, bool) {
	fields := m.Descriptor().Fields()
	out := make(fieldBytes, fields.Len())
	only := m.New()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if !m.Has(fd) {
			continue
		}
		if fd.IsMap() {
			return nil, false // FHIR protos have none; never spliced
		}
		only.Set(fd, m.Get(fd))
		b, err := deterministic.Marshal(only.Interface())
		only.Clear(fd)
		if err != nil {
			return nil, false
		}
		out[i] = b
	}
	return out, len(m.GetUnknown()) == 0
}

// differingFields returns the top-level fields in which m differs from the
// message whose fields encode as base, or nil when it is of another type or
// differs in too many.
func differingFields(base fieldBytes, baseType protoreflect.MessageDescriptor, m protoreflect.Message) []protoreflect.FieldDescriptor {
	if base == nil || m.Descriptor() != baseType {
		return nil
	}
	own, ok := encodeFields(m)
	if !ok {
		return nil
	}
	d := []protoreflect.FieldDescriptor{}
	for i := range own {
		if bytes.Equal(own[i], base[i]) && (own[i] == nil) == (base[i] == nil) {
			continue
		}
		if len(d) == maxSplicedFields {
			return nil
		}
		d = append(d, baseType.Fields().Get(i))
	}
	return d
}

// fieldsKey names a set of fields.
func fieldsKey(d []protoreflect.FieldDescriptor) string {
	var b bytes.Buffer
	for _, fd := range d {
		b.WriteString(string(fd.Name()))
		b.WriteByte(',')
	}
	return b.String()
}

// compactObject writes members as encoding/json writes a map: keys in
// byte order, no space. The values are jsonformat's, already compact.
func compactObject(members map[string]json.RawMessage) []byte {
	keys := make([]string, 0, len(members))
	n := 2
	for k, v := range members {
		keys = append(keys, k)
		n += len(k) + len(v) + 4
	}
	slices.Sort(keys)
	b := make([]byte, 0, n)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		kb, _ := json.Marshal(k)
		b = append(b, kb...)
		b = append(b, ':')
		b = append(b, members[k]...)
	}
	return append(b, '}')
}
