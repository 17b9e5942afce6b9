package render

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/jpeg"
	"strings"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/priorflow/priorflow/archive/dicomheader"
)

// MaxPixels bounds the pixels of a frame this package decodes.
const MaxPixels = 1 << 28

// Frame is one decoded frame.
type Frame struct {
	Width, Height int
	// PhotometricInterpretation is MONOCHROME1 or MONOCHROME2 for a
	// grayscale frame; for a colour frame, the source's (RGB,
	// YBR_FULL, PALETTE COLOR, ...).
	PhotometricInterpretation string
	// Gray holds a grayscale frame's stored pixel values (PS3.3
	// C.7.6.3.1): BitsStored bits from HighBit down, sign-extended when
	// PixelRepresentation is 1, row by row. The Modality LUT is not
	// applied. Nil for colour frames.
	Gray []int32
	// Color holds a colour frame converted to 8-bit RGB. Nil for grayscale
	// frames.
	Color *image.RGBA
}

// layout is the Image Pixel Module (PS3.3 C.7.6.3) of pixel data.
type layout struct {
	rows, cols, spp           int
	bitsAllocated, bitsStored int
	highBit, pixelRep, planar int
	photometric               string
	palette                   *palette // PALETTE COLOR only
	paletteErr                error
}

func layoutOf(h *dicomheader.Header) layout {
	l := layout{
		rows: h.Rows, cols: h.Columns, spp: h.SamplesPerPixel,
		bitsAllocated: h.BitsAllocated, bitsStored: h.BitsStored, pixelRep: h.PixelRepresentation,
		highBit: -1, photometric: h.PhotometricInterpretation,
	}
	if v, ok := firstInt(h.Dataset, tag.HighBit); ok {
		l.highBit = v
	}
	if v, ok := firstInt(h.Dataset, tag.PlanarConfiguration); ok {
		l.planar = v
	}
	if l.bitsStored == 0 {
		l.bitsStored = l.bitsAllocated
	}
	if l.highBit < 0 {
		l.highBit = l.bitsStored - 1
	}
	if l.photometric == "PALETTE COLOR" {
		l.palette, l.paletteErr = paletteOf(h.Dataset)
	}
	return l
}

func (l layout) grayscale() bool {
	return l.photometric == "MONOCHROME1" || l.photometric == "MONOCHROME2"
}

// decodeNative decodes native pixel data (PS3.5 8.1.1, 8.2) in little
// endian byte order.
func decodeNative(b []byte, l layout) (*Frame, error) {
	if l.rows < 1 || l.cols < 1 || l.spp < 1 || int64(l.rows)*int64(l.cols)*int64(l.spp) > MaxPixels {
		return nil, fmt.Errorf("%w: %d×%d pixels of %d samples", ErrUnsupportedImage, l.cols, l.rows, l.spp)
	}
	n := l.rows * l.cols
	need := (n*l.spp*l.bitsAllocated + 7) / 8
	if l.photometric == "YBR_FULL_422" {
		need = n * 2 // two luminance samples share one Cb and one Cr (C.7.6.3.1.2)
	}
	if len(b) < need {
		return nil, fmt.Errorf("%w: frame of %d bytes, %d×%d %s needs %d", ErrDecode, len(b), l.cols, l.rows, l.photometric, need)
	}
	f := &Frame{Width: l.cols, Height: l.rows, PhotometricInterpretation: l.photometric}
	var err error
	switch {
	case l.grayscale() && l.spp == 1:
		f.Gray, err = storedValues(b, n, l)
	case l.photometric == "PALETTE COLOR" && l.spp == 1:
		f.Color, err = paletteColor(b, n, l)
	case (l.photometric == "RGB" || l.photometric == "YBR_FULL") && l.spp == 3:
		f.Color, err = threeSamples(b, n, l)
	case l.photometric == "YBR_FULL_422" && l.spp == 3 && l.bitsAllocated == 8 && l.cols%2 == 0:
		f.Color = ybr422(b, l)
	default:
		err = fmt.Errorf("%w: %s with %d samples of %d bits", ErrUnsupportedImage, l.photometric, l.spp, l.bitsAllocated)
	}
	if err != nil {
		return nil, err
	}
	return f, nil
}

// storedValues extracts n stored values (PS3.5 8.1.1, PS3.3 C.7.6.3.1):
// bitsStored bits ending at highBit, sign-extended for Pixel
// Representation 1.
func storedValues(b []byte, n int, l layout) ([]int32, error) {
	bs, hb := l.bitsStored, l.highBit
	if bs < 1 || bs > l.bitsAllocated || hb < bs-1 || hb >= l.bitsAllocated || (bs == 32 && l.pixelRep == 0) {
		return nil, fmt.Errorf("%w: Bits Allocated %d, Bits Stored %d, High Bit %d, Pixel Representation %d",
			ErrUnsupportedImage, l.bitsAllocated, bs, hb, l.pixelRep)
	}
	var raw func(i int) uint32
	switch l.bitsAllocated {
	case 1:
		raw = func(i int) uint32 { return uint32(b[i/8]>>(i%8)) & 1 }
	case 8:
		raw = func(i int) uint32 { return uint32(b[i]) }
	case 16:
		raw = func(i int) uint32 { return uint32(binary.LittleEndian.Uint16(b[2*i:])) }
	case 32:
		raw = func(i int) uint32 { return binary.LittleEndian.Uint32(b[4*i:]) }
	default:
		return nil, fmt.Errorf("%w: Bits Allocated %d", ErrUnsupportedImage, l.bitsAllocated)
	}
	shift := uint(hb + 1 - bs)
	mask := uint64(1)<<uint(bs) - 1
	sign := uint64(1) << uint(bs-1)
	out := make([]int32, n)
	for i := range out {
		v := (uint64(raw(i)) >> shift) & mask
		if l.pixelRep == 1 && v&sign != 0 {
			out[i] = int32(int64(v) - int64(mask) - 1)
		} else {
			out[i] = int32(v)
		}
	}
	return out, nil
}

// sample8 returns sample s of pixel i of 8- or 16-bit data as 8 bits.
func sample8(b []byte, i, s int, l layout) uint8 {
	n := l.rows * l.cols
	idx := i*l.spp + s
	if l.planar == 1 {
		idx = s*n + i
	}
	if l.bitsAllocated == 8 {
		return b[idx]
	}
	v := binary.LittleEndian.Uint16(b[2*idx:])
	if bs := l.bitsStored; bs > 8 && bs <= 16 {
		v >>= uint(bs - 8)
	}
	return uint8(v)
}

// threeSamples converts RGB or YBR_FULL pixels (PS3.3 C.7.6.3.1.2), either
// Planar Configuration (C.7.6.3.1.3).
func threeSamples(b []byte, n int, l layout) (*image.RGBA, error) {
	if l.bitsAllocated != 8 && l.bitsAllocated != 16 {
		return nil, fmt.Errorf("%w: colour with %d bits", ErrUnsupportedImage, l.bitsAllocated)
	}
	img := image.NewRGBA(image.Rect(0, 0, l.cols, l.rows))
	for i := range n {
		c0, c1, c2 := sample8(b, i, 0, l), sample8(b, i, 1, l), sample8(b, i, 2, l)
		if l.photometric == "YBR_FULL" {
			c0, c1, c2 = color.YCbCrToRGB(c0, c1, c2)
		}
		copy(img.Pix[4*i:], []uint8{c0, c1, c2, 0xFF})
	}
	return img, nil
}

// ybr422 converts YBR_FULL_422 pixels: Y1 Y2 Cb Cr for each pair of pixels
// of a row (PS3.3 C.7.6.3.1.2).
func ybr422(b []byte, l layout) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, l.cols, l.rows))
	for p := 0; p < l.rows*l.cols/2; p++ {
		y1, y2, cb, cr := b[4*p], b[4*p+1], b[4*p+2], b[4*p+3]
		r, g, bl := color.YCbCrToRGB(y1, cb, cr)
		copy(img.Pix[8*p:], []uint8{r, g, bl, 0xFF})
		r, g, bl = color.YCbCrToRGB(y2, cb, cr)
		copy(img.Pix[8*p+4:], []uint8{r, g, bl, 0xFF})
	}
	return img
}

// palette is a Palette Color Lookup Table (PS3.3 C.7.6.3.1.5, C.7.9).
type palette struct {
	first int
	lut   [3][]uint8 // red, green, blue, each entry scaled to 8 bits
}

func paletteOf(ds dicom.Dataset) (*palette, error) {
	p := &palette{}
	descs := []tag.Tag{tag.RedPaletteColorLookupTableDescriptor, tag.GreenPaletteColorLookupTableDescriptor, tag.BluePaletteColorLookupTableDescriptor}
	datas := []tag.Tag{tag.RedPaletteColorLookupTableData, tag.GreenPaletteColorLookupTableData, tag.BluePaletteColorLookupTableData}
	for c := range 3 {
		d := allInts(ds, descs[c])
		data := bytesValue(ds, datas[c])
		if len(d) != 3 || data == nil {
			return nil, fmt.Errorf("%w: PALETTE COLOR without a simple %v lookup table (segmented tables are not supported)", ErrUnsupportedImage, descs[c])
		}
		entries, first, bits := d[0]&0xFFFF, d[1], d[2]
		if entries == 0 {
			entries = 1 << 16 // C.7.6.3.1.5
		}
		p.first = first
		lut := make([]uint8, entries)
		switch {
		case bits == 8 && len(data) >= entries && len(data) < 2*entries:
			copy(lut, data) // 8-bit entries packed two per word
		case bits == 8 && len(data) >= 2*entries:
			for i := range lut {
				lut[i] = data[2*i] // one 8-bit entry per 16-bit word
			}
		case bits == 16 && len(data) >= 2*entries:
			for i := range lut {
				lut[i] = data[2*i+1] // high byte of each 16-bit entry
			}
		default:
			return nil, fmt.Errorf("%w: %v has %d bytes for %d entries of %d bits", ErrUnsupportedImage, datas[c], len(data), entries, bits)
		}
		p.lut[c] = lut
	}
	return p, nil
}

func paletteColor(b []byte, n int, l layout) (*image.RGBA, error) {
	if l.paletteErr != nil {
		return nil, l.paletteErr
	}
	l.pixelRep = 0 // indices are unsigned unless the descriptor says otherwise
	idx, err := storedValues(b, n, l)
	if err != nil {
		return nil, err
	}
	img := image.NewRGBA(image.Rect(0, 0, l.cols, l.rows))
	for i, v := range idx {
		for c, lut := range l.palette.lut {
			j := min(max(int(v)-l.palette.first, 0), len(lut)-1)
			img.Pix[4*i+c] = lut[j]
		}
		img.Pix[4*i+3] = 0xFF
	}
	return img, nil
}

// decodeJPEG decodes a JPEG Baseline (Process 1) frame with image/jpeg.
func decodeJPEG(b []byte, l layout) (*Frame, error) {
	cfg, err := jpeg.DecodeConfig(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("%w: JPEG: %v", ErrDecode, err)
	}
	if cfg.Width != l.cols || cfg.Height != l.rows {
		return nil, fmt.Errorf("%w: JPEG of %d×%d in a %d×%d image", ErrDecode, cfg.Width, cfg.Height, l.cols, l.rows)
	}
	if int64(cfg.Width)*int64(cfg.Height) > MaxPixels {
		return nil, fmt.Errorf("%w: %d×%d pixels", ErrUnsupportedImage, cfg.Width, cfg.Height)
	}
	img, err := jpeg.Decode(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("%w: JPEG: %v", ErrDecode, err)
	}
	f := &Frame{Width: cfg.Width, Height: cfg.Height, PhotometricInterpretation: l.photometric}
	if g, ok := img.(*image.Gray); ok {
		if !l.grayscale() {
			f.PhotometricInterpretation = "MONOCHROME2"
		}
		f.Gray = make([]int32, f.Width*f.Height)
		for y := range f.Height {
			row := g.Pix[y*g.Stride : y*g.Stride+f.Width]
			for x, v := range row {
				f.Gray[y*f.Width+x] = int32(v)
			}
		}
		return f, nil
	}
	if l.grayscale() {
		f.PhotometricInterpretation = "RGB"
	}
	f.Color = image.NewRGBA(image.Rect(0, 0, f.Width, f.Height))
	draw.Draw(f.Color, f.Color.Bounds(), img, img.Bounds().Min, draw.Src)
	return f, nil
}

func element(ds dicom.Dataset, t tag.Tag) *dicom.Element {
	e, err := ds.FindElementByTag(t)
	if err != nil || e.Value == nil {
		return nil
	}
	return e
}

func allInts(ds dicom.Dataset, t tag.Tag) []int {
	e := element(ds, t)
	if e == nil || e.Value.ValueType() != dicom.Ints {
		return nil
	}
	v, _ := e.Value.GetValue().([]int)
	return v
}

func firstInt(ds dicom.Dataset, t tag.Tag) (int, bool) {
	if v := allInts(ds, t); len(v) > 0 {
		return v[0], true
	}
	return 0, false
}

func firstString(ds dicom.Dataset, t tag.Tag) string {
	e := element(ds, t)
	if e == nil || e.Value.ValueType() != dicom.Strings {
		return ""
	}
	v, _ := e.Value.GetValue().([]string)
	if len(v) == 0 {
		return ""
	}
	return strings.Trim(v[0], " \x00")
}

// bytesValue returns an OB or OW value; the library stores OW words in
// little endian order.
func bytesValue(ds dicom.Dataset, t tag.Tag) []byte {
	e := element(ds, t)
	if e == nil || e.Value.ValueType() != dicom.Bytes {
		return nil
	}
	v, _ := e.Value.GetValue().([]byte)
	return v
}
