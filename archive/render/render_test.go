package render_test

import (
	"bytes"
	"context"
	"errors"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/priorflow/priorflow/archive/dicomheader"
	"github.com/priorflow/priorflow/archive/dicomtest"
	"github.com/priorflow/priorflow/archive/frames"
	"github.com/priorflow/priorflow/archive/render"
)

// native is a Renderer without external decoders.
var native = render.New(render.WithTools(map[string]string{}))

func openBytes(t *testing.T, b []byte) *frames.PixelData {
	t.Helper()
	p, err := frames.Open(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatalf("frames.Open: %v", err)
	}
	return p
}

func openTemplate(t *testing.T, name string) *frames.PixelData {
	t.Helper()
	return openBytes(t, dicomtest.NewStudy(t, dicomtest.WithTemplate(name)).Series[0].Instances[0].Bytes)
}

func writeObject(t *testing.T, o *frames.Object) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := frames.Write(&buf, o); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func newObject(ts, pi string, rows, cols, spp, bits int) *frames.Object {
	return &frames.Object{
		TransferSyntaxUID: ts,
		Header: dicomheader.Header{
			SOPClassUID: "1.2.840.10008.5.1.4.1.1.7", SOPInstanceUID: dicomtest.NewUID(),
			StudyInstanceUID: dicomtest.NewUID(), SeriesInstanceUID: dicomtest.NewUID(),
			Rows: rows, Columns: cols, SamplesPerPixel: spp, BitsAllocated: bits, BitsStored: bits,
			PhotometricInterpretation: pi, NumberOfFrames: 1,
		},
	}
}

func encodeDecode(t *testing.T, img image.Image, mediaType string) image.Image {
	t.Helper()
	var buf bytes.Buffer
	if err := render.Encode(&buf, img, render.Params{MediaType: mediaType}); err != nil {
		t.Fatalf("Encode(%s): %v", mediaType, err)
	}
	var got image.Image
	var err error
	switch mediaType {
	case render.MediaTypePNG:
		got, err = png.Decode(&buf)
	default:
		got, err = jpeg.Decode(&buf)
	}
	if err != nil {
		t.Fatalf("decoding rendered %s: %v", mediaType, err)
	}
	return got
}

// TestRender_TestdataFiles renders every frame of every TCIA file as JPEG and
// PNG, full size and fitted in a viewport.
func TestRender_TestdataFiles(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, name := range dicomtest.Files {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			p := openTemplate(t, name)
			w, h := p.Header.Columns, p.Header.Rows
			for n := 1; n <= p.NumberOfFrames(); n++ {
				img, err := native.Render(ctx, p, n, render.Params{})
				if err != nil {
					t.Fatalf("Render(frame %d): %v", n, err)
				}
				mts := []string{render.MediaTypeJPEG, render.MediaTypePNG}
				if w*h > 1<<20 {
					mts = mts[:1] // PNG of the 3.7 MP CR takes long under -race
				}
				for _, mt := range mts {
					if got, want := encodeDecode(t, img, mt).Bounds().Size(), image.Pt(w, h); got != want {
						t.Errorf("frame %d %s size = %v, want %v", n, mt, got, want)
					}
				}
				img, err = native.Render(ctx, p, n, render.Params{Viewport: render.Viewport{Width: 100, Height: 60}})
				if err != nil {
					t.Fatalf("Render(frame %d, viewport): %v", n, err)
				}
				// Fit keeps the aspect ratio: the limiting side is 60 rows.
				scale := min(100/float64(w), 60/float64(h))
				want := image.Pt(int(float64(w)*scale+0.5), int(float64(h)*scale+0.5))
				if got := img.Bounds().Size(); got != want {
					t.Errorf("frame %d in viewport 100,60: size %v, want %v", n, got, want)
				}
			}
		})
	}
}

func TestRender_ViewportNeverEnlarges(t *testing.T) {
	t.Parallel()
	p := openTemplate(t, dicomtest.FileMR) // 176×176
	img, err := native.Render(context.Background(), p, 1, render.Params{Viewport: render.Viewport{Width: 1000, Height: 800}})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := img.Bounds().Size(), image.Pt(176, 176); got != want {
		t.Errorf("size = %v, want %v", got, want)
	}
}

func TestRender_ViewportSourceRegion(t *testing.T) {
	t.Parallel()
	p := openTemplate(t, dicomtest.FileMR)
	params, err := render.ParseParams(url.Values{"viewport": {"40,40,10,20,80,40"}})
	if err != nil {
		t.Fatal(err)
	}
	img, err := native.Render(context.Background(), p, 1, params)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := img.Bounds().Size(), image.Pt(40, 20); got != want {
		t.Errorf("size = %v, want %v", got, want)
	}
}

func mean(img image.Image) float64 {
	b := img.Bounds()
	var sum float64
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			sum += float64(color.GrayModel.Convert(img.At(x, y)).(color.Gray).Y)
		}
	}
	return sum / float64(b.Dx()*b.Dy())
}

// TestRender_Window checks the direction of each window change on the MR
// image (window 378,465 in its header; values in rescaled units).
func TestRender_Window(t *testing.T) {
	t.Parallel()
	p := openTemplate(t, dicomtest.FileMR)
	render1 := func(window string) float64 {
		t.Helper()
		q := url.Values{}
		if window != "" {
			q.Set("window", window)
		}
		params, err := render.ParseParams(q)
		if err != nil {
			t.Fatal(err)
		}
		img, err := native.Render(context.Background(), p, 1, params)
		if err != nil {
			t.Fatal(err)
		}
		return mean(img)
	}
	header := render1("")
	tests := []struct {
		name     string
		a, b     string
		brighter bool // whether b renders brighter than a
	}{
		{"header window equals the same window given", "378,465", "", false},
		{"higher center is darker", "378,465", "700,465", false},
		{"lower center is brighter", "378,465", "100,465", true},
		{"sigmoid higher center is darker", "378,465,sigmoid", "700,465,sigmoid", false},
		{"linear-exact lower center is brighter", "378,465,linear-exact", "100,465,linear-exact", true},
	}
	for _, tt := range tests {
		a := render1(tt.a)
		var b float64
		if tt.b == "" {
			b = header
			if a != b {
				t.Errorf("%s: mean %v with window %s, %v with the header's", tt.name, a, tt.a, b)
			}
			continue
		}
		b = render1(tt.b)
		if got := b > a; got != tt.brighter {
			t.Errorf("%s: mean %v with %s, %v with %s", tt.name, a, tt.a, b, tt.b)
		}
	}
	if header == 0 || header == 255 {
		t.Errorf("header window renders a flat image (mean %v)", header)
	}
}

// TestRender_MinMaxWithoutWindow renders the deflated OT image, which has
// no window: the darkest pixel renders 0 and the brightest 255.
func TestRender_MinMaxWithoutWindow(t *testing.T) {
	t.Parallel()
	p := openTemplate(t, dicomtest.FileOTDeflated)
	img, err := native.Render(context.Background(), p, 1, render.Params{})
	if err != nil {
		t.Fatal(err)
	}
	g := img.(*image.Gray)
	lo, hi := uint8(255), uint8(0)
	for _, v := range g.Pix {
		lo, hi = min(lo, v), max(hi, v)
	}
	if lo != 0 || hi != 255 {
		t.Errorf("rendered range = [%d, %d], want [0, 255]", lo, hi)
	}
}

// TestRender_Monochrome1Inverts renders the MR pixels as MONOCHROME2 and as
// MONOCHROME1 with the same window: each pixel of one is 255 minus the other.
func TestRender_Monochrome1Inverts(t *testing.T) {
	t.Parallel()
	mr := openTemplate(t, dicomtest.FileMR)
	px, err := mr.Frame(1)
	if err != nil {
		t.Fatal(err)
	}
	var imgs []*image.Gray
	for _, pi := range []string{"MONOCHROME2", "MONOCHROME1"} {
		o := newObject(frames.ExplicitVRLittleEndian, pi, 176, 176, 1, 16)
		o.Header.BitsStored = 12
		o.Native = px
		img, err := native.Render(context.Background(), openBytes(t, writeObject(t, o)), 1, render.Params{})
		if err != nil {
			t.Fatal(err)
		}
		imgs = append(imgs, img.(*image.Gray))
	}
	for i := range imgs[0].Pix {
		if a, b := imgs[0].Pix[i], imgs[1].Pix[i]; int(a)+int(b) != 255 {
			t.Fatalf("pixel %d: MONOCHROME2 %d, MONOCHROME1 %d, want a sum of 255", i, a, b)
		}
	}
	// The CR image is MONOCHROME1: its air (low values) renders white.
	cr := openTemplate(t, dicomtest.FileCR)
	f, err := native.Decode(context.Background(), cr, 1)
	if err != nil {
		t.Fatal(err)
	}
	img, err := native.Render(context.Background(), cr, 1, render.Params{})
	if err != nil {
		t.Fatal(err)
	}
	lowest := 0
	for i, v := range f.Gray {
		if v < f.Gray[lowest] {
			lowest = i
		}
	}
	if got := img.(*image.Gray).Pix[lowest]; got != 255 {
		t.Errorf("CR lowest value renders %d, want 255 (MONOCHROME1)", got)
	}
}

func TestDecode_RLE(t *testing.T) {
	t.Parallel()
	const rows, cols = 6, 10
	tests := []struct {
		name     string
		pi       string
		spp      int
		bits     int
		signed   bool
		wantGray []int32
	}{
		{name: "8-bit", pi: "MONOCHROME2", spp: 1, bits: 8},
		{name: "16-bit signed", pi: "MONOCHROME2", spp: 1, bits: 16, signed: true},
		{name: "RGB", pi: "RGB", spp: 3, bits: 8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			bps := tt.bits / 8
			px := make([]byte, rows*cols*tt.spp*bps)
			for i := range px {
				px[i] = byte(i*37 + i/7)
			}
			o := newObject(frames.RLELossless, tt.pi, rows, cols, tt.spp, tt.bits)
			if tt.signed {
				o.Header.PixelRepresentation = 1
			}
			o.Fragments = [][]byte{render.EncodeRLE(px, rows*cols, tt.spp, bps)}
			got, err := native.Decode(context.Background(), openBytes(t, writeObject(t, o)), 1)
			if err != nil {
				t.Fatal(err)
			}
			// The same pixels stored natively decode to the same frame.
			o.TransferSyntaxUID, o.Fragments, o.Native = frames.ExplicitVRLittleEndian, nil, px
			want, err := native.Decode(context.Background(), openBytes(t, writeObject(t, o)), 1)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("RLE frame differs from native (-want +got):\n%s", diff)
			}
			if tt.signed && !hasNegative(got.Gray) {
				t.Errorf("signed frame decoded without negative values")
			}
		})
	}
}

func sameFrame(a, b *render.Frame) bool {
	return a.Width == b.Width && a.Height == b.Height && a.PhotometricInterpretation == b.PhotometricInterpretation &&
		slices.Equal(a.Gray, b.Gray) && (a.Color == nil) == (b.Color == nil) && (a.Color == nil || bytes.Equal(a.Color.Pix, b.Color.Pix))
}

func hasNegative(v []int32) bool {
	for _, x := range v {
		if x < 0 {
			return true
		}
	}
	return false
}

func TestDecode_JPEGBaseline(t *testing.T) {
	t.Parallel()
	const w, h = 64, 48
	gray := image.NewGray(image.Rect(0, 0, w, h))
	rgb := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			gray.SetGray(x, y, color.Gray{Y: uint8(x*3 + y)})
			rgb.Set(x, y, color.RGBA{R: uint8(x * 4), G: uint8(y * 5), B: 128, A: 255})
		}
	}
	tests := []struct {
		name string
		pi   string
		spp  int
		img  image.Image
	}{
		{"grayscale", "MONOCHROME2", 1, gray},
		{"colour", "YBR_FULL_422", 3, rgb},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			if err := jpeg.Encode(&buf, tt.img, &jpeg.Options{Quality: 95}); err != nil {
				t.Fatal(err)
			}
			o := newObject(frames.JPEGBaseline8Bit, tt.pi, h, w, tt.spp, 8)
			o.Fragments = [][]byte{buf.Bytes()}
			f, err := native.Decode(context.Background(), openBytes(t, writeObject(t, o)), 1)
			if err != nil {
				t.Fatal(err)
			}
			worst := 0
			for y := range h {
				for x := range w {
					wr, wg, wb, _ := tt.img.At(x, y).RGBA()
					var gr, gg, gb uint32
					if f.Gray != nil {
						v := uint32(f.Gray[y*w+x]) * 0x101
						gr, gg, gb = v, v, v
					} else {
						gr, gg, gb, _ = f.Color.At(x, y).RGBA()
					}
					for _, d := range []int{int(wr>>8) - int(gr>>8), int(wg>>8) - int(gg>>8), int(wb>>8) - int(gb>>8)} {
						worst = max(worst, d, -d)
					}
				}
			}
			if worst > 12 {
				t.Errorf("largest difference after the JPEG round trip = %d, want at most 12", worst)
			}
		})
	}
}

func TestDecode_UnsupportedTransferSyntax(t *testing.T) {
	t.Parallel()
	o := newObject(frames.JPEG2000, "MONOCHROME2", 4, 4, 1, 8)
	o.Fragments = [][]byte{{0xFF, 0x4F, 0xFF, 0x51}}
	p := openBytes(t, writeObject(t, o))
	_, err := native.Render(context.Background(), p, 1, render.Params{})
	if !errors.Is(err, render.ErrUnsupportedTransferSyntax) {
		t.Fatalf("Render error = %v, want ErrUnsupportedTransferSyntax", err)
	}
	var tse *render.TransferSyntaxError
	if !errors.As(err, &tse) || tse.UID != frames.JPEG2000 {
		t.Errorf("Render error = %#v, want a *TransferSyntaxError for %s", err, frames.JPEG2000)
	}
}

func TestThumbnail_FitsDefaultSquare(t *testing.T) {
	t.Parallel()
	tests := []struct {
		file string
		want image.Point
	}{
		{dicomtest.FileCR, image.Pt(105, 128)}, // 1760×2140
		{dicomtest.FileCTMulti, image.Pt(128, 128)},
		{dicomtest.FilePET1, image.Pt(128, 128)},
	}
	for _, tt := range tests {
		img, err := native.Thumbnail(context.Background(), openTemplate(t, tt.file), render.Params{})
		if err != nil {
			t.Fatalf("%s: %v", tt.file, err)
		}
		if got := img.Bounds().Size(); got != tt.want {
			t.Errorf("%s thumbnail size = %v, want %v", tt.file, got, tt.want)
		}
	}
}

func TestParseParams(t *testing.T) {
	t.Parallel()
	tests := []struct {
		query   string
		want    render.Params
		wantErr bool
	}{
		{"", render.Params{}, false},
		{"quality=75", render.Params{Quality: 75}, false},
		{"viewport=512,256", render.Params{Viewport: render.Viewport{Width: 512, Height: 256}}, false},
		{"viewport=64,64,0,10,100,50", render.Params{Viewport: render.Viewport{Width: 64, Height: 64, Source: image.Rect(0, 10, 100, 60)}}, false},
		{"window=40,400", render.Params{Window: &render.Window{Center: 40, Width: 400, Function: render.Linear}}, false},
		{"window=-600,1500,SIGMOID", render.Params{Window: &render.Window{Center: -600, Width: 1500, Function: render.Sigmoid}}, false},
		{"window=0,0.5,linear-exact", render.Params{Window: &render.Window{Center: 0, Width: 0.5, Function: render.LinearExact}}, false},
		{"window=0,0.5", render.Params{}, true}, // LINEAR needs width ≥ 1
		{"window=40", render.Params{}, true},
		{"window=40,400,gamma", render.Params{}, true},
		{"window=NaN,400", render.Params{}, true},
		{"quality=0", render.Params{}, true},
		{"quality=101", render.Params{}, true},
		{"viewport=0,0", render.Params{}, true},
		{"viewport=-1,10", render.Params{}, true},
		{"viewport=10,10,0,0,-5,5", render.Params{}, true},
		{"viewport=10", render.Params{}, true},
	}
	for _, tt := range tests {
		q, err := url.ParseQuery(tt.query)
		if err != nil {
			t.Fatal(err)
		}
		got, err := render.ParseParams(q)
		if gotErr := err != nil; gotErr != tt.wantErr {
			t.Errorf("ParseParams(%q) error = %v, want error %v", tt.query, err, tt.wantErr)
			continue
		}
		if err != nil {
			if !errors.Is(err, render.ErrInvalidParameter) {
				t.Errorf("ParseParams(%q) error = %v, want ErrInvalidParameter", tt.query, err)
			}
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("ParseParams(%q) mismatch (-want +got):\n%s", tt.query, diff)
		}
	}
}

func TestEncode_UnsupportedMediaType(t *testing.T) {
	t.Parallel()
	err := render.Encode(&bytes.Buffer{}, image.NewGray(image.Rect(0, 0, 1, 1)), render.Params{MediaType: "image/gif"})
	if !errors.Is(err, render.ErrUnsupportedMediaType) {
		t.Errorf("Encode(image/gif) error = %v, want ErrUnsupportedMediaType", err)
	}
}

// dcmtkCompress compresses a TCIA file with a dcmtk encoder, skipping the
// test when dcmtk is not installed (make test installs it).
func dcmtkCompress(t *testing.T, tool, template string, args ...string) []byte {
	t.Helper()
	path, err := exec.LookPath(tool)
	if err != nil {
		t.Skipf("%s not installed (apt-get install dcmtk): %v", tool, err)
	}
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.dcm"), filepath.Join(dir, "out.dcm")
	b := dicomtest.NewStudy(t, dicomtest.WithTemplate(template)).Series[0].Instances[0].Bytes
	if err := os.WriteFile(in, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if msg, err := exec.Command(path, append(args, in, out)...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", tool, err, msg)
	}
	c, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestDecode_Dcmtk compresses TCIA files losslessly with dcmtk and checks
// that every frame decodes to the original stored values: JPEG Lossless and
// JPEG-LS through dcmtk's decoders, RLE through the Go decoder.
func TestDecode_Dcmtk(t *testing.T) {
	t.Parallel()
	withTools := render.New()
	tests := []struct {
		name, encoder, decoder, template, ts string
		args                                 []string
	}{
		{"JPEG lossless SV1", "dcmcjpeg", "dcmdjpeg", dicomtest.FileMR, frames.JPEGLosslessSV1, nil},
		{"JPEG lossless SV1 multi-frame", "dcmcjpeg", "dcmdjpeg", dicomtest.FileCTMulti, frames.JPEGLosslessSV1, nil},
		{"JPEG lossless process 14", "dcmcjpeg", "dcmdjpeg", dicomtest.FilePET1, frames.JPEGLossless, []string{"+el"}},
		{"JPEG-LS lossless", "dcmcjpls", "dcmdjpls", dicomtest.FileMR, frames.JPEGLSLossless, nil},
		{"RLE by dcmtk, decoded in Go", "dcmcrle", "", dicomtest.FileCTMulti, frames.RLELossless, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if tt.decoder != "" {
				if _, err := exec.LookPath(tt.decoder); err != nil {
					t.Skipf("%s not installed (apt-get install dcmtk): %v", tt.decoder, err)
				}
			}
			p := openBytes(t, dcmtkCompress(t, tt.encoder, tt.template, tt.args...))
			if got := p.TransferSyntaxUID; got != tt.ts {
				t.Fatalf("%s wrote transfer syntax %s, want %s", tt.encoder, got, tt.ts)
			}
			orig := openTemplate(t, tt.template)
			for n := 1; n <= orig.NumberOfFrames(); n++ {
				want, err := native.Decode(context.Background(), orig, n)
				if err != nil {
					t.Fatal(err)
				}
				got, err := withTools.Decode(context.Background(), p, n)
				if err != nil {
					t.Fatalf("Decode(frame %d): %v", n, err)
				}
				// slices.Equal first: cmp.Diff is slow on 512×512 frames.
				if !sameFrame(want, got) {
					t.Errorf("frame %d differs from the uncompressed original (-want +got):\n%s", n, cmp.Diff(want, got))
				}
			}
		})
	}
}

// TestDecode_DcmtkJPEGBaseline decodes a dcmtk JPEG Baseline image in Go.
func TestDecode_DcmtkJPEGBaseline(t *testing.T) {
	t.Parallel()
	p := openBytes(t, dcmtkCompress(t, "dcmcjpeg", dicomtest.FileOTDeflated, "+eb"))
	if got := p.TransferSyntaxUID; got != frames.JPEGBaseline8Bit {
		t.Fatalf("transfer syntax %s, want %s", got, frames.JPEGBaseline8Bit)
	}
	got, err := native.Decode(context.Background(), p, 1)
	if err != nil {
		t.Fatal(err)
	}
	want, err := native.Decode(context.Background(), openTemplate(t, dicomtest.FileOTDeflated), 1)
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for i := range want.Gray {
		d := float64(got.Gray[i] - want.Gray[i])
		sum += d * d
	}
	if rms := sum / float64(len(want.Gray)); rms > 25 {
		t.Errorf("mean squared error %v after JPEG Baseline, want at most 25", rms)
	}
}
