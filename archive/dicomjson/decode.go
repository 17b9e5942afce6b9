package dicomjson

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/suyashkumar/dicom/pkg/tag"
)

// ErrInvalid is returned (wrapped) for input that is not DICOM JSON.
var ErrInvalid = errors.New("invalid DICOM JSON")

// MaxDepth is the deepest sequence nesting Unmarshal accepts.
const MaxDepth = 32

// Object is one DICOM JSON object (PS3.18 F.2.1): attributes keyed by their
// tag as eight upper-case hex digits, such as "0020000D".
type Object map[string]Attribute

// Attribute is one attribute of an Object (PS3.18 F.2.2).
type Attribute struct {
	VR string
	// Value holds the values: string for string VRs and AT, json.Number for
	// numeric VRs, PersonName for PN, Object for SQ items, and nil for an
	// empty value (JSON null).
	Value        []any
	BulkDataURI  string
	InlineBinary []byte
}

// PersonName is one PN value (PS3.18 F.2.2): component groups, each with
// components separated by "^" (PS3.5 6.2).
type PersonName struct {
	Alphabetic  string `json:",omitempty"`
	Ideographic string `json:",omitempty"`
	Phonetic    string `json:",omitempty"`
}

// Key returns the key of t in an Object, such as "0020000D".
func Key(t tag.Tag) string { return fmt.Sprintf("%04X%04X", t.Group, t.Element) }

// Unmarshal decodes DICOM JSON: either an array of objects, as in QIDO-RS
// responses and WADO-RS metadata, or a single object.
func Unmarshal(data []byte) ([]Object, error) {
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, fmt.Errorf("dicomjson.Unmarshal: %w: %v", ErrInvalid, err)
	}
	if err := d.Decode(new(any)); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("dicomjson.Unmarshal: %w: data after the top-level value", ErrInvalid)
	}
	var objs []Object
	switch v := v.(type) {
	case []any:
		for i, o := range v {
			obj, err := toObject(o, 0)
			if err != nil {
				return nil, fmt.Errorf("dicomjson.Unmarshal: object %d: %w", i, err)
			}
			objs = append(objs, obj)
		}
	case map[string]any:
		obj, err := toObject(v, 0)
		if err != nil {
			return nil, fmt.Errorf("dicomjson.Unmarshal: %w", err)
		}
		objs = append(objs, obj)
	default:
		return nil, fmt.Errorf("dicomjson.Unmarshal: %w: top level is neither an array nor an object", ErrInvalid)
	}
	return objs, nil
}

// UnmarshalJSON decodes one DICOM JSON object.
func (o *Object) UnmarshalJSON(data []byte) error {
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	obj, err := toObject(v, 0)
	if err != nil {
		return err
	}
	*o = obj
	return nil
}

// MarshalJSON encodes the object with its attributes in tag order.
func (o Object) MarshalJSON() ([]byte, error) {
	m := make(map[string]attributeJSON, len(o))
	for k, a := range o {
		m[k] = attributeJSON(a)
	}
	// encoding/json sorts map keys, and fixed-width upper-case hex sorts as
	// the tags do.
	return json.Marshal(m)
}

type attributeJSON Attribute

func (a attributeJSON) MarshalJSON() ([]byte, error) {
	out := struct {
		VR           string `json:"vr"`
		Value        []any  `json:"Value,omitempty"`
		BulkDataURI  string `json:"BulkDataURI,omitempty"`
		InlineBinary []byte `json:"InlineBinary,omitempty"`
	}{a.VR, a.Value, a.BulkDataURI, a.InlineBinary}
	return json.Marshal(out)
}

// toObject converts a generic JSON value into an Object, checking the
// structure of PS3.18 F.2.
func toObject(v any, depth int) (Object, error) {
	if depth > MaxDepth {
		return nil, fmt.Errorf("%w: sequences nested deeper than %d", ErrInvalid, MaxDepth)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: attribute set is not an object", ErrInvalid)
	}
	obj := make(Object, len(m))
	for k, raw := range m {
		if !validKey(k) {
			return nil, fmt.Errorf("%w: key %q is not a tag", ErrInvalid, k)
		}
		a, err := toAttribute(raw, depth)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
		obj[strings.ToUpper(k)] = a
	}
	return obj, nil
}

func toAttribute(v any, depth int) (Attribute, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return Attribute{}, fmt.Errorf("%w: attribute is not an object", ErrInvalid)
	}
	var a Attribute
	vr, _ := m["vr"].(string)
	if !validVR(vr) {
		return a, fmt.Errorf("%w: vr %q", ErrInvalid, m["vr"])
	}
	a.VR = vr
	if raw, ok := m["BulkDataURI"]; ok {
		if a.BulkDataURI, ok = raw.(string); !ok {
			return a, fmt.Errorf("%w: BulkDataURI is not a string", ErrInvalid)
		}
	}
	if raw, ok := m["InlineBinary"]; ok {
		s, ok := raw.(string)
		if !ok {
			return a, fmt.Errorf("%w: InlineBinary is not a string", ErrInvalid)
		}
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return a, fmt.Errorf("%w: InlineBinary: %v", ErrInvalid, err)
		}
		// An empty InlineBinary is an empty value, as an absent one is
		// (PS3.18 F.2.5); keep one form so equal objects compare equal.
		if len(b) > 0 {
			a.InlineBinary = b
		}
	}
	raw, ok := m["Value"]
	if !ok || raw == nil {
		return a, nil
	}
	values, ok := raw.([]any)
	if !ok {
		return a, fmt.Errorf("%w: Value is not an array", ErrInvalid)
	}
	if len(values) == 0 {
		return a, nil
	}
	a.Value = make([]any, 0, len(values))
	for i, v := range values {
		val, err := toValue(v, vr, depth)
		if err != nil {
			return a, fmt.Errorf("Value[%d]: %w", i, err)
		}
		a.Value = append(a.Value, val)
	}
	return a, nil
}

// toValue checks one value against its VR (PS3.18 F.2.3).
func toValue(v any, vr string, depth int) (any, error) {
	if v == nil {
		return nil, nil
	}
	switch vr {
	case "SQ":
		return toObject(v, depth+1)
	case "PN":
		m, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%w: PN value is not an object", ErrInvalid)
		}
		var pn PersonName
		for k, dst := range map[string]*string{"Alphabetic": &pn.Alphabetic, "Ideographic": &pn.Ideographic, "Phonetic": &pn.Phonetic} {
			if g, ok := m[k]; ok {
				if *dst, ok = g.(string); !ok {
					return nil, fmt.Errorf("%w: PN %s is not a string", ErrInvalid, k)
				}
			}
		}
		return pn, nil
	}
	switch v := v.(type) {
	case string, json.Number:
		return v, nil
	}
	return nil, fmt.Errorf("%w: %s value of type %T", ErrInvalid, vr, v)
}

func validKey(k string) bool {
	if len(k) != 8 {
		return false
	}
	_, err := strconv.ParseUint(k, 16, 32)
	return err == nil
}

func validVR(vr string) bool {
	return len(vr) == 2 && vr[0] >= 'A' && vr[0] <= 'Z' && vr[1] >= 'A' && vr[1] <= 'Z'
}

// Attribute returns the attribute of t and whether it is present.
func (o Object) Attribute(t tag.Tag) (Attribute, bool) {
	a, ok := o[Key(t)]
	return a, ok
}

// Strings returns the values of t as strings: strings without the padding
// their VR calls insignificant (significant reads), numbers in their JSON
// form, person names as their DICOM form ("A=I=P"), and "" for empty
// values. It returns nil for sequences and absent attributes.
func (o Object) Strings(t tag.Tag) []string {
	a, ok := o[Key(t)]
	if !ok || a.VR == "SQ" {
		return nil
	}
	out := make([]string, 0, len(a.Value))
	for _, v := range a.Value {
		switch v := v.(type) {
		case string:
			out = append(out, significant(a.VR, v))
		case json.Number:
			out = append(out, v.String())
		case PersonName:
			out = append(out, v.String())
		default:
			out = append(out, "")
		}
	}
	return out
}

// significant returns s without the spaces (and, for UI, NULs) PS3.5
// Table 6.2-1 calls insignificant for vr: at either end of a code, date,
// number, UID or short or long string, at the end of a text or URI. JSON
// carries what the sender's DICOM held, so a remote archive's " CT" is
// the code CT, as a DICOM reader (archive/dicomheader) reads it.
func significant(vr, s string) string {
	switch vr {
	case "AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "SH", "TM", "UI":
		return strings.Trim(s, " \x00")
	case "LT", "ST", "UC", "UR", "UT":
		return strings.TrimRight(s, " \x00")
	}
	return s
}

// String returns the first value of t as Strings does, or "".
func (o Object) String(t tag.Tag) string {
	if vs := o.Strings(t); len(vs) > 0 {
		return vs[0]
	}
	return ""
}

// PersonName returns the first value of a PN attribute, or the zero
// PersonName.
func (o Object) PersonName(t tag.Tag) PersonName {
	a := o[Key(t)]
	if len(a.Value) > 0 {
		if pn, ok := a.Value[0].(PersonName); ok {
			return pn
		}
	}
	return PersonName{}
}

// Int returns the first value of t as an integer, and whether there was one.
// Numbers and numeric strings (IS sent as a string) are accepted.
func (o Object) Int(t tag.Tag) (int, bool) {
	a := o[Key(t)]
	if len(a.Value) == 0 {
		return 0, false
	}
	var s string
	switch v := a.Value[0].(type) {
	case json.Number:
		s = v.String()
	case string:
		s = strings.TrimSpace(v)
	default:
		return 0, false
	}
	if n, err := strconv.ParseInt(strings.TrimPrefix(s, "+"), 10, 0); err == nil {
		return int(n), true
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && f == float64(int(f)) {
		return int(f), true
	}
	return 0, false
}

// Sequence returns the items of an SQ attribute; an empty item is returned as
// an empty Object.
func (o Object) Sequence(t tag.Tag) []Object {
	a := o[Key(t)]
	var out []Object
	for _, v := range a.Value {
		item, _ := v.(Object)
		if item == nil {
			item = Object{}
		}
		out = append(out, item)
	}
	return out
}

// String returns the value in its DICOM form, component groups separated by
// "=" with trailing empty groups left out (PS3.5 6.2).
func (pn PersonName) String() string {
	s := pn.Alphabetic + "=" + pn.Ideographic + "=" + pn.Phonetic
	return strings.TrimRight(s, "=")
}
