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

// Run is a run of resources compared with its first, before any of them is
// printed (printing changes references in place): which top-level fields,
// and of lists of as many elements which elements, each later one does not
// share with the first. What reads only shared fields reads the same in
// both: the codec prints a later resource by splicing (MarshalOwnedRun) and
// the store takes the first's search values (SharesValues). The AuditEvents
// of one access differ only in their id and entities.
type Run struct {
	res   []proto.Message
	diffs [][]protoreflect.FieldDescriptor // nil: nothing shared that counts
	elems []map[int][]int
}

// NewRun compares each of res with res[0] by the deterministic encodings of
// their fields. It does not change them.
func NewRun(res []proto.Message) *Run {
	r := &Run{res: res, diffs: make([][]protoreflect.FieldDescriptor, len(res)), elems: make([]map[int][]int, len(res))}
	if len(res) > 1 {
		first := res[0].ProtoReflect()
		base := encodeFields(first)
		for i := 1; i < len(res); i++ {
			r.diffs[i], r.elems[i] = differing(base, first.Descriptor(), res[i].ProtoReflect())
		}
	}
	return r
}

// SharesValues reports whether p extracts from the i-th resource of the run
// the values it extracts from the first: the two are of one type and equal
// in every top-level field that p's paths start at. p must be a parameter
// of their type.
func (r *Run) SharesValues(i int, p *SearchParam) bool {
	if i == 0 {
		return true
	}
	d := r.diffs[i]
	if d == nil || len(p.paths) == 0 {
		return false
	}
	md := r.res[i].ProtoReflect().Descriptor()
	for _, path := range p.paths {
		if len(path) < 2 {
			return false
		}
		fd := fieldByName(md, path[1])
		if fd == nil || slices.Contains(d, fd) {
			return false
		}
	}
	return true
}

// MarshalOwnedRun prints the resources of run as MarshalOwned prints each,
// faster when they are alike. The first resource is printed whole; a later
// one of the same type that differs from it in a few top-level fields is
// printed as the first's JSON with those fields' members replaced by what
// printing them alone gives; in a list of elements of the same length, only
// the elements that differ are printed and spliced into the first's array.
// jsonformat prints every element on its own and writes an object's
// members in key order and an array's elements in order, so the two are
// the same bytes (TestMarshalOwnedRun_SameAsMarshal and its fuzz target
// hold them to it).
// As MarshalOwned, it takes the resources over: they must not be printed
// again or have their search values read afterwards.
func (c *Codec) MarshalOwnedRun(run *Run) ([][]byte, error) {
	res, diffs, elems := run.res, run.diffs, run.elems
	out := make([][]byte, len(res))
	if len(res) == 0 {
		return out, nil
	}
	first := res[0].ProtoReflect()
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
		part, err := c.printFields(first, d, nil, true)
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
	sp := &splicer{c: c, body: body, firstKeys: firstKeys, arrays: map[string][]json.RawMessage{}}
	for i := 1; i < len(res); i++ {
		if out[i], err = sp.spliced(res[i], diffs[i], elems[i]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// splicer prints the later resources of a run from the first's JSON.
type splicer struct {
	c         *Codec
	body      []byte                       // the first, printed
	firstKeys map[string][]string          // the first's members of each set of differing fields
	members   map[string]json.RawMessage   // of body, parsed on first use
	arrays    map[string][]json.RawMessage // elements of body's arrays, by key, parsed on first use
}

// spliced prints m, which differs from the run's first resource in the
// fields d (and, of its lists in elems, only in those elements), by
// splicing; or whole when it cannot.
func (sp *splicer) spliced(m proto.Message, d []protoreflect.FieldDescriptor, elems map[int][]int) ([]byte, error) {
	if d == nil {
		return sp.c.MarshalOwned(m)
	}
	old, ok := sp.firstKeys[fieldsKey(d)]
	if !ok || old == nil {
		return sp.c.MarshalOwned(m)
	}
	if len(d) == 0 {
		return slices.Clone(sp.body), nil
	}
	if sp.members == nil {
		if err := json.Unmarshal(sp.body, &sp.members); err != nil {
			return sp.c.MarshalOwned(m)
		}
	}
	part, err := sp.c.printFields(m.ProtoReflect(), d, elems, false)
	if err != nil {
		return nil, err
	}
	if part == nil {
		return sp.c.MarshalOwned(m)
	}
	for _, fd := range d {
		idx := elems[fd.Index()]
		if idx == nil {
			continue
		}
		// Only the differing elements were printed: put them in the
		// first's array.
		arr, ok := sp.elementsSpliced(fd.JSONName(), part, idx, m.ProtoReflect().Get(fd).List().Len())
		if !ok {
			return sp.c.MarshalOwned(m)
		}
		part[fd.JSONName()] = arr
	}
	merged := maps.Clone(sp.members)
	for _, k := range old {
		delete(merged, k)
	}
	maps.Copy(merged, part)
	return compactObject(merged), nil
}

// elementsSpliced returns the first's array under key, of n elements, with
// the elements at idx replaced by those printed in part, or false when the
// two do not line up element for element.
func (sp *splicer) elementsSpliced(key string, part map[string]json.RawMessage, idx []int, n int) (json.RawMessage, bool) {
	if _, ext := part["_"+key]; ext {
		return nil, false
	}
	if _, ext := sp.members["_"+key]; ext {
		return nil, false
	}
	base, ok := sp.arrays[key]
	if !ok {
		if raw, found := sp.members[key]; found && json.Unmarshal(raw, &base) != nil {
			base = nil
		}
		sp.arrays[key] = base
	}
	var printed []json.RawMessage
	if raw, found := part[key]; !found || json.Unmarshal(raw, &printed) != nil || len(printed) != len(idx) {
		return nil, false
	}
	if len(base) != n {
		return nil, false
	}
	arr := slices.Clone(base)
	for k, i := range idx {
		arr[i] = printed[k]
	}
	size := 2
	for _, e := range arr {
		size += len(e) + 1
	}
	out := make([]byte, 0, size)
	out = append(out, '[')
	for k, e := range arr {
		if k > 0 {
			out = append(out, ',')
		}
		out = append(out, e...)
	}
	return append(out, ']'), true
}

// printFields prints the fields d of m alone, as the members of a resource
// of m's type holding nothing else, and returns them by key (without
// resourceType). With copyFields the fields are printed from a copy, so
// that m stays as it is. It returns nil when the result cannot be spliced.
func (c *Codec) printFields(m protoreflect.Message, d []protoreflect.FieldDescriptor, elems map[int][]int, copyFields bool) (map[string]json.RawMessage, error) {
	only := m.New()
	for _, fd := range d {
		if !m.Has(fd) {
			continue
		}
		if idx := elems[fd.Index()]; idx != nil {
			// Of a list, the elements at idx alone (m is the caller's to
			// print in place).
			from, to := m.Get(fd).List(), only.Mutable(fd).List()
			for _, k := range idx {
				to.Append(from.Get(k))
			}
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
// fields: per field, none when it is unset, one for each element of a list
// of messages, and the field's own otherwise. Comparing them is how the
// resources of a run are compared: equal messages encode alike, and
// encoding goes through generated code where proto.Equal walks by
// reflection (it was a third of MarshalOwnedRun).
type fieldBytes [][][]byte

var deterministic = proto.MarshalOptions{Deterministic: true}

// encodeFields returns the encodings of m's fields, or nil when m cannot be
// spliced (unknown fields, a map).
func encodeFields(m protoreflect.Message) fieldBytes {
	if len(m.GetUnknown()) > 0 {
		return nil
	}
	fields := m.Descriptor().Fields()
	out := make(fieldBytes, fields.Len())
	only := m.New()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		switch {
		case !m.Has(fd):
		case fd.IsMap():
			return nil // FHIR protos have none
		case fd.IsList() && fd.Kind() == protoreflect.MessageKind:
			l := m.Get(fd).List()
			for k := 0; k < l.Len(); k++ {
				b, err := deterministic.Marshal(l.Get(k).Message().Interface())
				if err != nil {
					return nil
				}
				out[i] = append(out[i], b)
			}
		default:
			only.Set(fd, m.Get(fd))
			b, err := deterministic.Marshal(only.Interface())
			only.Clear(fd)
			if err != nil {
				return nil
			}
			out[i] = [][]byte{b}
		}
	}
	return out
}

// differing returns the top-level fields in which m differs from the
// message whose fields encode as base, and for those that are lists of as
// many elements as base's, the indexes of the elements that differ when not
// all do. d is nil when m is of another type or differs in too many fields.
func differing(base fieldBytes, baseType protoreflect.MessageDescriptor, m protoreflect.Message) (d []protoreflect.FieldDescriptor, elems map[int][]int) {
	if base == nil || m.Descriptor() != baseType {
		return nil, nil
	}
	own := encodeFields(m)
	if own == nil {
		return nil, nil
	}
	d = []protoreflect.FieldDescriptor{}
	for i, b := range own {
		a := base[i]
		var idx []int
		if len(a) == len(b) {
			for k := range b {
				if !bytes.Equal(a[k], b[k]) {
					idx = append(idx, k)
				}
			}
			if idx == nil {
				continue
			}
		}
		if len(d) == maxSplicedFields {
			return nil, nil
		}
		d = append(d, baseType.Fields().Get(i))
		// Only a list of messages has more than one encoding.
		if idx != nil && len(idx) < len(b) {
			if elems == nil {
				elems = map[int][]int{}
			}
			elems[i] = idx
		}
	}
	return d, elems
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
