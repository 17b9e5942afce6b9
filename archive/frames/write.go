package frames

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"fmt"
	"io"
	"strconv"

	"github.com/priorflow/priorflow/archive/dicomheader"
)

// implementationClassUID identifies Priorflow as the writer of files made by
// Write (PS3.7 D.3.3.2), a UID under the 2.25 root (PS3.5 B.2).
const implementationClassUID = "2.25.197001958409457045093335473633428553641"

// Object is a minimal image object for Write: identifying UIDs, the Image
// Pixel Module (PS3.3 C.7.6.3) and Pixel Data.
type Object struct {
	TransferSyntaxUID string
	// Header supplies the SOP Class, SOP Instance, Study and Series
	// Instance UIDs, Rows, Columns, Bits Allocated and Stored (High Bit is
	// Bits Stored - 1), Pixel Representation, Samples per Pixel,
	// Photometric Interpretation, Number of Frames (written when above 1),
	// and the rescale and window values when not nil. Dataset is ignored.
	Header              dicomheader.Header
	PlanarConfiguration int // written when Samples per Pixel is above 1

	// Native is the pixel data of a native transfer syntax, every frame in
	// order, in little endian byte order (Write swaps 16- and 32-bit words
	// for Explicit VR Big Endian).
	Native []byte
	// Fragments and OffsetTable are the encapsulated pixel data of any
	// other transfer syntax (PS3.5 A.4): the fragments in order, and the
	// Basic Offset Table (nil for an empty one).
	Fragments   [][]byte
	OffsetTable []uint32
}

// Write writes o as a DICOM Part 10 file (PS3.10 7). It serves to hand one
// frame to an external codec, and to build test objects in any transfer
// syntax.
func Write(w io.Writer, o *Object) error {
	b, err := encode(o)
	if err != nil {
		return fmt.Errorf("frames.Write: %w", err)
	}
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("frames.Write: %w", err)
	}
	return nil
}

func encode(o *Object) ([]byte, error) {
	h := &o.Header
	ts := o.TransferSyntaxUID
	meta := &elementWriter{enc: encoding{order: binary.LittleEndian}}
	meta.bytes(0x0002, 0x0001, "OB", []byte{0, 1})
	meta.str(0x0002, 0x0002, "UI", h.SOPClassUID)
	meta.str(0x0002, 0x0003, "UI", h.SOPInstanceUID)
	meta.str(0x0002, 0x0010, "UI", ts)
	meta.str(0x0002, 0x0012, "UI", implementationClassUID)

	enc := encodingOf(ts)
	ds := &elementWriter{enc: enc}
	ds.str(0x0008, 0x0016, "UI", h.SOPClassUID)
	ds.str(0x0008, 0x0018, "UI", h.SOPInstanceUID)
	ds.str(0x0020, 0x000D, "UI", h.StudyInstanceUID)
	ds.str(0x0020, 0x000E, "UI", h.SeriesInstanceUID)
	ds.us(0x0028, 0x0002, h.SamplesPerPixel)
	ds.str(0x0028, 0x0004, "CS", h.PhotometricInterpretation)
	if h.SamplesPerPixel > 1 {
		ds.us(0x0028, 0x0006, o.PlanarConfiguration)
	}
	if h.NumberOfFrames > 1 {
		ds.str(0x0028, 0x0008, "IS", strconv.Itoa(h.NumberOfFrames))
	}
	ds.us(0x0028, 0x0010, h.Rows)
	ds.us(0x0028, 0x0011, h.Columns)
	ds.us(0x0028, 0x0100, h.BitsAllocated)
	ds.us(0x0028, 0x0101, h.BitsStored)
	ds.us(0x0028, 0x0102, h.BitsStored-1)
	ds.us(0x0028, 0x0103, h.PixelRepresentation)
	for _, v := range []struct {
		elem uint16
		f    *float64
	}{{0x1050, h.WindowCenter}, {0x1051, h.WindowWidth}, {0x1052, h.RescaleIntercept}, {0x1053, h.RescaleSlope}} {
		if v.f != nil {
			ds.str(0x0028, v.elem, "DS", strconv.FormatFloat(*v.f, 'g', 10, 64))
		}
	}
	if IsNative(ts) {
		vr, px := "OB", o.Native
		if h.BitsAllocated > 8 {
			vr = "OW"
		}
		if enc.order == binary.BigEndian {
			px = bytes.Clone(px)
			swap(px, h.BitsAllocated)
		}
		ds.bytes(0x7FE0, 0x0010, vr, px)
	} else {
		ds.encapsulated(o.OffsetTable, o.Fragments)
	}

	var out bytes.Buffer
	out.Write(make([]byte, 128))
	out.WriteString("DICM")
	group := &elementWriter{enc: meta.enc}
	group.u32(0x0002, 0x0000, uint32(meta.buf.Len()))
	out.Write(group.buf.Bytes())
	out.Write(meta.buf.Bytes())
	if ts != DeflatedExplicitVRLittleEndian {
		out.Write(ds.buf.Bytes())
		return out.Bytes(), nil
	}
	fw, err := flate.NewWriter(&out, flate.DefaultCompression)
	if err != nil {
		return nil, err
	}
	if _, err := fw.Write(ds.buf.Bytes()); err != nil {
		return nil, err
	}
	if err := fw.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// elementWriter encodes data elements (PS3.5 7.1).
type elementWriter struct {
	enc encoding
	buf bytes.Buffer
}

func (w *elementWriter) head(group, elem uint16, vr string, length uint32) {
	o := w.enc.order
	var b [12]byte
	o.PutUint16(b[0:], group)
	o.PutUint16(b[2:], elem)
	switch {
	case w.enc.implicit || group == 0xFFFE:
		o.PutUint32(b[4:], length)
		w.buf.Write(b[:8])
	case longVR(vr):
		copy(b[4:], vr)
		o.PutUint32(b[8:], length)
		w.buf.Write(b[:12])
	default:
		copy(b[4:], vr)
		o.PutUint16(b[6:], uint16(length))
		w.buf.Write(b[:8])
	}
}

func (w *elementWriter) bytes(group, elem uint16, vr string, v []byte) {
	w.head(group, elem, vr, uint32(len(v)+len(v)%2))
	w.buf.Write(v)
	if len(v)%2 == 1 {
		w.buf.WriteByte(0)
	}
}

// str writes a string value padded to even length: UI with NUL, others with
// a space (PS3.5 6.2).
func (w *elementWriter) str(group, elem uint16, vr, v string) {
	if len(v)%2 == 1 {
		if vr == "UI" {
			v += "\x00"
		} else {
			v += " "
		}
	}
	w.bytes(group, elem, vr, []byte(v))
}

func (w *elementWriter) us(group, elem uint16, v int) {
	b := make([]byte, 2)
	w.enc.order.PutUint16(b, uint16(v))
	w.bytes(group, elem, "US", b)
}

func (w *elementWriter) u32(group, elem uint16, v uint32) {
	b := make([]byte, 4)
	w.enc.order.PutUint32(b, v)
	w.bytes(group, elem, "UL", b)
}

// encapsulated writes encapsulated Pixel Data (PS3.5 A.4): the Basic Offset
// Table item, one item per fragment, and the Sequence Delimitation Item.
func (w *elementWriter) encapsulated(bot []uint32, frags [][]byte) {
	w.head(0x7FE0, 0x0010, "OB", undefinedLength)
	w.head(0xFFFE, 0xE000, "", uint32(4*len(bot)))
	for _, o := range bot {
		_ = binary.Write(&w.buf, binary.LittleEndian, o)
	}
	for _, f := range frags {
		w.head(0xFFFE, 0xE000, "", uint32(len(f)+len(f)%2))
		w.buf.Write(f)
		if len(f)%2 == 1 {
			w.buf.WriteByte(0)
		}
	}
	w.head(0xFFFE, 0xE0DD, "", 0)
}
