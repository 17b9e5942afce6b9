package frames_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/priorflow/priorflow/archive/dicomheader"
	"github.com/priorflow/priorflow/archive/dicomtest"
	"github.com/priorflow/priorflow/archive/frames"
)

// TestOpen_TestdataFiles opens every TCIA file and checks each frame against
// the pixel data the DICOM library reads.
func TestOpen_TestdataFiles(t *testing.T) {
	t.Parallel()
	tests := []struct {
		file       string
		frames     int
		frameBytes int // Rows*Columns*SamplesPerPixel*BitsAllocated/8
	}{
		{dicomtest.FilePET1, 1, 168 * 168 * 2},
		{dicomtest.FilePET2, 1, 168 * 168 * 2},
		{dicomtest.FileMR, 1, 176 * 176 * 2},
		{dicomtest.FileCR, 1, 2140 * 1760 * 2},
		{dicomtest.FileCTMulti, 2, 512 * 512 * 2},
		{dicomtest.FileOTDeflated, 1, 512 * 512},
	}
	g := dicomtest.NewGenerator(t)
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			t.Parallel()
			st, err := g.Study(dicomtest.WithTemplate(tt.file))
			if err != nil {
				t.Fatal(err)
			}
			b := st.Series[0].Instances[0].Bytes
			p, err := frames.Open(bytes.NewReader(b), int64(len(b)))
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if got, want := p.NumberOfFrames(), tt.frames; got != want {
				t.Fatalf("NumberOfFrames() = %d, want %d", got, want)
			}
			if p.Encapsulated {
				t.Errorf("Encapsulated = true, want false")
			}
			want := libraryPixelData(t, b)
			for n := 1; n <= tt.frames; n++ {
				f, err := p.Frame(n)
				if err != nil {
					t.Fatalf("Frame(%d): %v", n, err)
				}
				if got, want := len(f), tt.frameBytes; got != want {
					t.Errorf("len(Frame(%d)) = %d, want %d", n, got, want)
				}
				if !bytes.Equal(f, want[(n-1)*tt.frameBytes:n*tt.frameBytes]) {
					t.Errorf("Frame(%d) differs from the library's Pixel Data", n)
				}
			}
			for _, n := range []int{0, tt.frames + 1} {
				if _, err := p.Frame(n); !errors.Is(err, frames.ErrNoSuchFrame) {
					t.Errorf("Frame(%d) error = %v, want ErrNoSuchFrame", n, err)
				}
			}
		})
	}
}

// libraryPixelData returns the Pixel Data value bytes as the DICOM library
// reads them.
func libraryPixelData(t *testing.T, b []byte) []byte {
	t.Helper()
	ds, err := dicom.Parse(bytes.NewReader(b), int64(len(b)), nil, dicom.SkipProcessingPixelDataValue())
	if err != nil {
		t.Fatal(err)
	}
	e, err := ds.FindElementByTag(tag.PixelData)
	if err != nil {
		t.Fatal(err)
	}
	return dicom.MustGetPixelDataInfo(e.Value).UnprocessedValueData
}

type countingReaderAt struct {
	r io.ReaderAt
	n atomic.Int64
}

func (c *countingReaderAt) ReadAt(b []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(b, off)
	c.n.Add(int64(n))
	return n, err
}

// TestOpen_ReadsOnlyWhatItNeeds opens the 7.5 MB CR file from disk: Open
// reads the header alone, and Frame reads the frame once.
func TestOpen_ReadsOnlyWhatItNeeds(t *testing.T) {
	t.Parallel()
	f, err := os.Open(dicomtest.TestdataPath(t, dicomtest.FileCR))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	cr := &countingReaderAt{r: f}
	p, err := frames.Open(cr, fi.Size())
	if err != nil {
		t.Fatal(err)
	}
	if got, limit := cr.n.Load(), int64(64<<10); got > limit {
		t.Errorf("Open read %d bytes, want at most %d", got, limit)
	}
	before := cr.n.Load()
	frame, err := p.Frame(1)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cr.n.Load()-before, int64(len(frame)); got != want {
		t.Errorf("Frame read %d bytes, want %d", got, want)
	}
}

func TestRead_MatchesOpen(t *testing.T) {
	t.Parallel()
	b := dicomtest.NewStudy(t, dicomtest.WithTemplate(dicomtest.FileCTMulti)).Series[0].Instances[0].Bytes
	p, err := frames.Read(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	f2, err := p.Frame(2)
	if err != nil {
		t.Fatal(err)
	}
	if want := libraryPixelData(t, b)[512*512*2:]; !bytes.Equal(f2, want) {
		t.Errorf("Frame(2) differs from the second half of Pixel Data")
	}
}

// newObject returns an object with new UIDs and the given image layout.
func newObject(ts string, rows, cols, spp, bitsAllocated, nframes int) *frames.Object {
	pi := "MONOCHROME2"
	if spp == 3 {
		pi = "RGB"
	}
	return &frames.Object{
		TransferSyntaxUID: ts,
		Header: dicomheader.Header{
			SOPClassUID:               "1.2.840.10008.5.1.4.1.1.7",
			SOPInstanceUID:            dicomtest.NewUID(),
			StudyInstanceUID:          dicomtest.NewUID(),
			SeriesInstanceUID:         dicomtest.NewUID(),
			Rows:                      rows,
			Columns:                   cols,
			SamplesPerPixel:           spp,
			BitsAllocated:             bitsAllocated,
			BitsStored:                bitsAllocated,
			PhotometricInterpretation: pi,
			NumberOfFrames:            nframes,
		},
	}
}

func write(t *testing.T, o *frames.Object) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := frames.Write(&buf, o); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func open(t *testing.T, b []byte) (*frames.PixelData, error) {
	t.Helper()
	return frames.Open(bytes.NewReader(b), int64(len(b)))
}

// TestOpen_NativeTransferSyntaxes writes three 16-bit frames in each native
// transfer syntax and reads them back in little endian.
func TestOpen_NativeTransferSyntaxes(t *testing.T) {
	t.Parallel()
	const rows, cols, n = 3, 5, 3
	px := make([]byte, rows*cols*2*n)
	for i := range px {
		px[i] = byte(i * 7)
	}
	for _, ts := range []string{frames.ImplicitVRLittleEndian, frames.ExplicitVRLittleEndian, frames.ExplicitVRBigEndian, frames.DeflatedExplicitVRLittleEndian} {
		t.Run(frames.SyntaxName(ts), func(t *testing.T) {
			t.Parallel()
			o := newObject(ts, rows, cols, 1, 16, n)
			o.Native = px
			p, err := open(t, write(t, o))
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if got, want := p.TransferSyntaxUID, ts; got != want {
				t.Errorf("TransferSyntaxUID = %q, want %q", got, want)
			}
			var got [][]byte
			for i := 1; i <= n; i++ {
				f, err := p.Frame(i)
				if err != nil {
					t.Fatalf("Frame(%d): %v", i, err)
				}
				got = append(got, f)
			}
			want := [][]byte{px[:30], px[30:60], px[60:]}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("frames mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func frag(first byte, n int) []byte {
	b := bytes.Repeat([]byte{0xAB}, n)
	b[0] = first
	return b
}

// jpegFrag is a fragment that starts a JPEG codestream (SOI marker).
func jpegFrag(n int) []byte { b := frag(0xFF, n); b[1] = 0xD8; return b }

// TestOpen_Encapsulated covers the ways PS3.5 A.4 lets frames map to
// fragments.
func TestOpen_Encapsulated(t *testing.T) {
	t.Parallel()
	a, b, c, d, e := frag(1, 4), frag(2, 6), frag(3, 2), frag(4, 8), frag(5, 10)
	tests := []struct {
		name    string
		nframes int
		frags   [][]byte
		bot     []uint32
		want    [][][]byte // fragments of each frame
		wantErr error
	}{
		{"one frame takes every fragment", 1, [][]byte{a, b, c}, nil, [][][]byte{{a, b, c}}, nil},
		{"one fragment per frame", 3, [][]byte{a, b, c}, nil, [][][]byte{{a}, {b}, {c}}, nil},
		{"offset table groups fragments", 3, [][]byte{a, b, c, d, e}, []uint32{0, 8 + 4 + 8 + 6, 8 + 4 + 8 + 6 + 8 + 2}, [][][]byte{{a, b}, {c}, {d, e}}, nil},
		{"offset table of one frame", 1, [][]byte{a, b}, []uint32{0}, [][][]byte{{a, b}}, nil},
		{"codestream markers without offset table", 2, [][]byte{jpegFrag(4), b, jpegFrag(6), c}, nil, [][][]byte{{jpegFrag(4), b}, {jpegFrag(6), c}}, nil},
		{"fewer fragments than frames", 3, [][]byte{a, b}, nil, nil, frames.ErrMalformed},
		{"offset table entry count differs", 2, [][]byte{a, b}, []uint32{0}, nil, frames.ErrMalformed},
		{"offset table entry inside a fragment", 2, [][]byte{a, b}, []uint32{0, 5}, nil, frames.ErrMalformed},
		{"offset table not starting at zero", 2, [][]byte{a, b, c}, []uint32{12, 26}, nil, frames.ErrMalformed},
		{"offset table decreasing", 2, [][]byte{a, b}, []uint32{12, 0}, nil, frames.ErrMalformed},
		{"no markers to split on", 2, [][]byte{a, b, c}, nil, nil, frames.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := newObject(frames.RLELossless, 2, 2, 1, 8, tt.nframes)
			o.Fragments, o.OffsetTable = tt.frags, tt.bot
			p, err := open(t, write(t, o))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Open error = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if !p.Encapsulated {
				t.Errorf("Encapsulated = false, want true")
			}
			var got [][][]byte
			for n := 1; n <= p.NumberOfFrames(); n++ {
				fs, err := p.Fragments(n)
				if err != nil {
					t.Fatalf("Fragments(%d): %v", n, err)
				}
				got = append(got, fs)
				f, err := p.Frame(n)
				if err != nil {
					t.Fatalf("Frame(%d): %v", n, err)
				}
				if want := bytes.Join(fs, nil); !bytes.Equal(f, want) {
					t.Errorf("Frame(%d) = %x, want the fragments joined %x", n, f, want)
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("fragments mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestOpen_Errors(t *testing.T) {
	t.Parallel()
	noPixelData := func() []byte {
		ds, err := dicom.ParseFile(dicomtest.TestdataPath(t, dicomtest.FileMR), nil, dicom.SkipProcessingPixelDataValue())
		if err != nil {
			t.Fatal(err)
		}
		b, err := dicomtest.Encode(dicomtest.Edit(ds, dicomtest.Remove(tag.PixelData)))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	native := newObject(frames.ExplicitVRLittleEndian, 4, 4, 1, 8, 2)
	native.Native = make([]byte, 16) // one frame, not two
	unterminated := newObject(frames.RLELossless, 2, 2, 1, 8, 1)
	unterminated.Fragments = [][]byte{frag(1, 8)}
	unterminatedBytes := write(t, unterminated)
	tests := []struct {
		name string
		data []byte
		want error
	}{
		{"truncated pixel data", dicomtest.BrokenTruncatedPixelData(t), frames.ErrTruncated},
		{"truncated header", dicomtest.BrokenTruncated(t), frames.ErrTruncated},
		{"no preamble", dicomtest.BrokenNoPreamble(t), frames.ErrMalformed},
		{"no pixel data", noPixelData(), frames.ErrNoPixelData},
		{"pixel data shorter than its frames", write(t, native), frames.ErrMalformed},
		{"no sequence delimiter", unterminatedBytes[:len(unterminatedBytes)-8], frames.ErrTruncated},
		{"empty", nil, frames.ErrTruncated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := open(t, tt.data); !errors.Is(err, tt.want) {
				t.Errorf("Open error = %v, want %v", err, tt.want)
			}
		})
	}
}
