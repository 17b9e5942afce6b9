package dimse

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/priorflow/priorflow/archive/dicomheader"
)

// Transfer syntaxes (PS3.5 A).
const (
	ImplicitVRLittleEndian         = "1.2.840.10008.1.2"
	ExplicitVRLittleEndian         = "1.2.840.10008.1.2.1"
	DeflatedExplicitVRLittleEndian = "1.2.840.10008.1.2.1.99"
)

// Attribute is one attribute of an Identifier. Value holds the values
// separated by backslashes; an empty Value asks for the attribute in the
// responses (a return key, PS3.4 C.2.2.1.3).
type Attribute struct {
	Tag   tag.Tag
	VR    string
	Value string
}

// Identifier is the data set of a C-FIND, C-GET or C-MOVE request (PS3.4
// C.4.1.1.3, C.4.3.1.3). Text is written as given, in UTF-8: an identifier
// with text beyond ASCII carries Specific Character Set ISO_IR 192.
type Identifier []Attribute

// encode writes the identifier in the transfer syntax ts, which must be
// Implicit or Explicit VR Little Endian; attributes are sorted by tag.
func (id Identifier) encode(ts string) ([]byte, error) {
	explicit := ts == ExplicitVRLittleEndian
	if !explicit && ts != ImplicitVRLittleEndian {
		return nil, fmt.Errorf("dimse: identifier in transfer syntax %s", ts)
	}
	attrs := slices.Clone(id)
	slices.SortFunc(attrs, func(a, b Attribute) int {
		return int(uint32(a.Tag.Group)<<16|uint32(a.Tag.Element)) - int(uint32(b.Tag.Group)<<16|uint32(b.Tag.Element))
	})
	var b bytes.Buffer
	le := binary.LittleEndian
	for i, a := range attrs {
		if i > 0 && attrs[i-1].Tag == a.Tag {
			return nil, fmt.Errorf("dimse: identifier names %s twice", a.Tag)
		}
		if len(a.VR) != 2 {
			return nil, fmt.Errorf("dimse: attribute %s without a VR", a.Tag)
		}
		v := a.Value
		if a.VR == "SQ" && v != "" {
			return nil, fmt.Errorf("dimse: sequence %s with a value; only an empty sequence (a return key) is written", a.Tag)
		}
		if len(v)%2 == 1 {
			if a.VR == "UI" {
				v += "\x00"
			} else {
				v += " "
			}
		}
		if len(v) > 0xFFFE {
			return nil, fmt.Errorf("dimse: attribute %s of %d bytes", a.Tag, len(v))
		}
		b.Write(le.AppendUint16(nil, a.Tag.Group))
		b.Write(le.AppendUint16(nil, a.Tag.Element))
		switch {
		case !explicit:
			b.Write(le.AppendUint32(nil, uint32(len(v))))
		case longLength(a.VR):
			b.WriteString(a.VR)
			b.Write([]byte{0, 0})
			b.Write(le.AppendUint32(nil, uint32(len(v))))
		default:
			b.WriteString(a.VR)
			b.Write(le.AppendUint16(nil, uint16(len(v))))
		}
		b.WriteString(v)
	}
	return b.Bytes(), nil
}

// longLength reports whether an Explicit VR element of vr has a 4-byte
// length (PS3.5 7.1.2).
func longLength(vr string) bool {
	switch vr {
	case "OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV":
		return true
	}
	return false
}

// parseDataSet reads a data set received in transfer syntax ts (a C-FIND
// response's identifier) with the archive's header parser: its checks of
// the structure, and its reading of the text into UTF-8.
func parseDataSet(ts string, data []byte) (dicom.Dataset, error) {
	b := append(part10Header("", "", ts, ""), data...)
	return dicomheader.ParseDataset(bytes.NewReader(b), int64(len(b)))
}

// part10Header is the preamble and File Meta Information (PS3.10 7.1)
// that make a data set received in transfer syntax ts a Part 10 stream.
// The SOP Class and Instance, and the AE title of the peer that sent it
// (Source Application Entity Title), are written when known.
func part10Header(sopClass, sopInstance, ts, sourceAE string) []byte {
	var meta bytes.Buffer
	le := binary.LittleEndian
	el := func(elem uint16, vr, v string, pad byte) {
		if v == "" {
			return
		}
		if len(v)%2 == 1 {
			v += string(pad)
		}
		meta.Write([]byte{0x02, 0x00})
		meta.Write(le.AppendUint16(nil, elem))
		meta.WriteString(vr)
		meta.Write(le.AppendUint16(nil, uint16(len(v))))
		meta.WriteString(v)
	}
	// File Meta Information Version 00\01 (OB, 4-byte length).
	meta.Write([]byte{0x02, 0x00, 0x01, 0x00, 'O', 'B', 0, 0, 2, 0, 0, 0, 0, 1})
	el(0x0002, "UI", sopClass, 0)
	el(0x0003, "UI", sopInstance, 0)
	el(0x0010, "UI", ts, 0)
	el(0x0012, "UI", ImplementationClassUID, 0)
	el(0x0013, "SH", ImplementationVersionName, ' ')
	el(0x0016, "AE", sourceAE, ' ')
	var b bytes.Buffer
	b.Write(make([]byte, 128))
	b.WriteString("DICM")
	b.Write([]byte{0x02, 0x00, 0x00, 0x00, 'U', 'L', 4, 0})
	b.Write(le.AppendUint32(nil, uint32(meta.Len())))
	b.Write(meta.Bytes())
	return b.Bytes()
}
