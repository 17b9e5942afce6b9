package dicomheader

import (
	"bytes"
	"encoding/binary"
	"strings"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/priorflow/priorflow/internal/printable"
)

// A data set may hold a standard attribute with VR UN: a gateway or an
// anonymizer that did not know the attribute kept its bytes, and whatever
// wrote the data set in Explicit VR afterwards had no VR to give it (PS3.5
// 6.2.2). Such a value is encoded as Implicit VR Little Endian encodes it,
// and a reader that knows the attribute may read it with the VR of the data
// dictionary, as DCMTK and pydicom do. The archive must: read as bytes, a
// PatientID held as UN was refused as missing, an IssuerOfPatientID held
// as UN filed the object in no issuer's domain, and a Modality or Study
// Date held as UN was not indexed. Private Creator elements, which Implicit
// VR gives no VR, are LO (PS3.5 7.8.1).
//
// The stored object keeps its bytes; only what is read from it (the Header,
// the DICOM JSON of its metadata) sees the dictionary's VR. A value that
// does not read as that VR stays UN.

// maxUnknownVR bounds the elements of one data set parsed again with the
// dictionary's VR: each costs a parse of its own, and real data sets hold a
// few, while a crafted one could hold a million.
const maxUnknownVR = 256

// readUnknownVR replaces each element of elems, and of their sequence
// items, that holds a dictionary attribute as UN by the same attribute read
// with the dictionary's VR, up to maxUnknownVR of them. charset is the data
// set's Specific Character Set element (nil when absent), so that text is
// decoded as the data set's other text is.
func readUnknownVR(elems []*dicom.Element, charset *dicom.Element) {
	budget := maxUnknownVR
	readUnknownVRIn(elems, charset, &budget)
}

func readUnknownVRIn(elems []*dicom.Element, charset *dicom.Element, budget *int) {
	for i, e := range elems {
		if *budget == 0 {
			return
		}
		if e.Value == nil {
			continue
		}
		switch v := e.Value.GetValue().(type) {
		case []*dicom.SequenceItemValue:
			for _, item := range v {
				if inner, ok := item.GetValue().([]*dicom.Element); ok {
					readUnknownVRIn(inner, charset, budget)
				}
			}
		case []byte:
			if e.RawValueRepresentation != "UN" {
				continue
			}
			vr := dictionaryVR(e.Tag)
			switch {
			case vr == "":
			case isPrivateCreator(e.Tag):
				// Not read as Implicit VR, which gives it UN again.
				if r := privateCreator(e, v); r != nil {
					elems[i] = r
				}
			case vr == "OB" || vr == "OD" || vr == "OF" || vr == "OL" || vr == "OW":
				// The bytes are the value; only the label changes.
				c := *e
				c.RawValueRepresentation = vr
				elems[i] = &c
			default:
				*budget--
				if r := readAs(e.Tag, v, charset); r != nil {
					elems[i] = r
				}
			}
		}
	}
}

// dictionaryVR returns the VR an element of tag t held as UN is given (of
// several, the one an Implicit VR read gives), or "" to keep UN: for
// attributes the dictionary does not know, private data elements, and
// attributes whose VR is UN or one the library cannot read.
func dictionaryVR(t tag.Tag) string {
	switch {
	case t.Group == 0x0002 || t.Group == 0xFFFE || t == tag.PixelData:
		return ""
	case isPrivateCreator(t):
		return "LO"
	case t.Group%2 == 1:
		return ""
	}
	vr := implicitVR(t)
	switch vr {
	case "UN", "OV", "SV", "UV":
		// The library (v1.1.0) cannot read the last three (see header).
		return ""
	}
	return vr
}

// isPrivateCreator reports whether t is a Private Creator Data Element
// (PS3.5 7.8.1).
func isPrivateCreator(t tag.Tag) bool {
	return t.Group%2 == 1 && t.Element >= 0x0010 && t.Element <= 0x00FF
}

// implicitTS is the Transfer Syntax UID of Implicit VR Little Endian,
// padded to an even length (PS3.5 9.1).
const implicitTS = "1.2.840.10008.1.2\x00"

// readAs reads value, held as UN by an element of tag t, as Implicit VR
// Little Endian reads it: with the dictionary's VR, items and all. It
// returns nil when the value does not read so. The value is handed to the
// library as a Part 10 stream of its own, through the same guard as every
// other stream, so that a sequence inside it is checked as one.
func readAs(t tag.Tag, value []byte, charset *dicom.Element) *dicom.Element {
	var b bytes.Buffer
	b.Write(make([]byte, 128))
	b.WriteString("DICM")
	le := binary.LittleEndian
	// File Meta Information (Explicit VR Little Endian): its group length
	// and the transfer syntax of what follows.
	b.Write([]byte{0x02, 0x00, 0x00, 0x00, 'U', 'L', 4, 0})
	b.Write(le.AppendUint32(nil, 8+uint32(len(implicitTS))))
	b.Write([]byte{0x02, 0x00, 0x10, 0x00, 'U', 'I'})
	b.Write(le.AppendUint16(nil, uint16(len(implicitTS))))
	b.WriteString(implicitTS)
	if charset != nil && charset.Value != nil && charset.Value.ValueType() == dicom.Strings {
		names, _ := charset.Value.GetValue().([]string)
		writeImplicit(&b, tag.SpecificCharacterSet, []byte(evenPadded(strings.Join(names, `\`))))
	}
	writeImplicit(&b, t, value)
	ds, err := parseDataset(bytes.NewReader(b.Bytes()), int64(b.Len()))
	if err != nil {
		return nil
	}
	// parseDataset has read the items' own private creators as LO.
	e, err := ds.FindElementByTag(t)
	if err != nil {
		return nil
	}
	return e
}

// privateCreator returns e, a Private Creator held as UN, as LO, or nil
// when its value is no text.
func privateCreator(e *dicom.Element, value []byte) *dicom.Element {
	s := strings.Trim(string(value), " \x00")
	if strings.ContainsRune(s, '\\') || !printable.Valid(s) {
		return nil
	}
	v, err := dicom.NewValue([]string{s})
	if err != nil {
		return nil
	}
	return &dicom.Element{Tag: e.Tag, ValueRepresentation: tag.VRString, RawValueRepresentation: "LO", ValueLength: e.ValueLength, Value: v}
}

// writeImplicit writes one Implicit VR Little Endian element.
func writeImplicit(b *bytes.Buffer, t tag.Tag, value []byte) {
	le := binary.LittleEndian
	b.Write(le.AppendUint16(nil, t.Group))
	b.Write(le.AppendUint16(nil, t.Element))
	b.Write(le.AppendUint32(nil, uint32(len(value))))
	b.Write(value)
}

func evenPadded(s string) string {
	if len(s)%2 == 1 {
		return s + " "
	}
	return s
}
