package dicomtest

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"fmt"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"
)

const (
	explicitLittleTS = "1.2.840.10008.1.2.1"
	deflatedTS       = "1.2.840.10008.1.2.1.99"
)

// encodeDeflated writes ds in the Deflated Explicit VR Little Endian transfer
// syntax (PS3.5 A.5): the File Meta Information as usual, then the data set in
// explicit VR little endian compressed with raw deflate (RFC 1951).
func encodeDeflated(ds dicom.Dataset, opts []dicom.WriteOption) ([]byte, error) {
	plain := Edit(ds, Set(tag.TransferSyntaxUID, explicitLittleTS))
	var buf bytes.Buffer
	if err := dicom.Write(&buf, plain, opts...); err != nil {
		return nil, err
	}
	out := buf.Bytes()
	// Preamble, "DICM", then (0002,0000) UL with a 4-byte value.
	const groupLengthEnd = 128 + 4 + 12
	if len(out) < groupLengthEnd {
		return nil, fmt.Errorf("encodeDeflated: short output")
	}
	metaLen := int(binary.LittleEndian.Uint32(out[groupLengthEnd-4:]))
	if len(out) < groupLengthEnd+metaLen {
		return nil, fmt.Errorf("encodeDeflated: short meta group")
	}
	meta, err := replaceTransferSyntax(out[groupLengthEnd:groupLengthEnd+metaLen], deflatedTS)
	if err != nil {
		return nil, err
	}

	var res bytes.Buffer
	res.Write(out[:groupLengthEnd-4])
	_ = binary.Write(&res, binary.LittleEndian, uint32(len(meta)))
	res.Write(meta)
	fw, err := flate.NewWriter(&res, flate.DefaultCompression)
	if err != nil {
		return nil, err
	}
	if _, err := fw.Write(out[groupLengthEnd+metaLen:]); err != nil {
		return nil, err
	}
	if err := fw.Close(); err != nil {
		return nil, err
	}
	return res.Bytes(), nil
}

// replaceTransferSyntax rewrites the (0002,0010) element of an explicit VR
// little endian File Meta Information group.
func replaceTransferSyntax(meta []byte, ts string) ([]byte, error) {
	if len(ts)%2 == 1 {
		ts += "\x00"
	}
	var out bytes.Buffer
	for i := 0; i < len(meta); {
		if len(meta)-i < 8 {
			return nil, fmt.Errorf("replaceTransferSyntax: truncated element")
		}
		group := binary.LittleEndian.Uint16(meta[i:])
		elem := binary.LittleEndian.Uint16(meta[i+2:])
		vr := string(meta[i+4 : i+6])
		hdr, vl := 8, int(binary.LittleEndian.Uint16(meta[i+6:]))
		switch vr {
		case "OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV":
			if len(meta)-i < 12 {
				return nil, fmt.Errorf("replaceTransferSyntax: truncated element")
			}
			hdr, vl = 12, int(binary.LittleEndian.Uint32(meta[i+8:]))
		}
		end := i + hdr + vl
		if end > len(meta) || end < i {
			return nil, fmt.Errorf("replaceTransferSyntax: element overruns group")
		}
		if group == 0x0002 && elem == 0x0010 {
			out.Write(meta[i : i+6])
			_ = binary.Write(&out, binary.LittleEndian, uint16(len(ts)))
			out.WriteString(ts)
		} else {
			out.Write(meta[i:end])
		}
		i = end
	}
	return out.Bytes(), nil
}
