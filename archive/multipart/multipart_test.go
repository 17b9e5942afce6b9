package multipart_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/priorflow/priorflow/archive/dicomheader"
	"github.com/priorflow/priorflow/archive/dicomtest"
	"github.com/priorflow/priorflow/archive/multipart"
)

func TestParseSTOWContentType(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    multipart.ContentType
		wantErr error
	}{
		{in: `multipart/related; type="application/dicom"; boundary=XYZ`, want: multipart.ContentType{Type: "application/dicom", Boundary: "XYZ"}},
		{in: `multipart/related; type=application/dicom; boundary="a b:c"`, want: multipart.ContentType{Type: "application/dicom", Boundary: "a b:c"}},
		{in: `Multipart/Related; Type="Application/DICOM"; Boundary=XYZ; start="<1@x>"`, want: multipart.ContentType{Type: "application/dicom", Boundary: "XYZ", Start: "<1@x>"}},
		{in: `multipart/related; type="application/dicom; transfer-syntax=1.2.840.10008.1.2.1"; boundary=XYZ`, want: multipart.ContentType{Type: "application/dicom", Boundary: "XYZ"}},
		{in: `application/dicom`, wantErr: multipart.ErrNotMultipartRelated},
		{in: `multipart/form-data; boundary=XYZ`, wantErr: multipart.ErrNotMultipartRelated},
		{in: ``, wantErr: multipart.ErrNotMultipartRelated},
		{in: `multipart/related; boundary=XYZ`, wantErr: multipart.ErrUnsupportedType},
		{in: `multipart/related; type="application/dicom+json"; boundary=XYZ`, wantErr: multipart.ErrUnsupportedType},
		{in: `multipart/related; type="application/dicom"`, wantErr: multipart.ErrMissingBoundary},
		{in: `multipart/related; type="application/dicom"; boundary=""`, wantErr: multipart.ErrMissingBoundary},
		{in: `multipart/related; type="application/dicom"; boundary="` + strings.Repeat("x", 257) + `"`, wantErr: multipart.ErrMissingBoundary},
		// Longer than RFC 2046's 70, as Orthanc's STOW-RS client sends.
		{in: `multipart/related; type="application/dicom"; boundary=` + strings.Repeat("x", 73), want: multipart.ContentType{Type: "application/dicom", Boundary: strings.Repeat("x", 73)}},
	}
	for _, tt := range tests {
		got, err := multipart.ParseSTOWContentType(tt.in)
		if tt.wantErr != nil {
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("ParseSTOWContentType(%q) error = %v, want %v", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseSTOWContentType(%q): %v", tt.in, err)
			continue
		}
		got.Params = nil
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("ParseSTOWContentType(%q) mismatch (-want +got):\n%s", tt.in, diff)
		}
	}
}

func TestWriter_ContentType(t *testing.T) {
	t.Parallel()
	w := multipart.NewWriter(io.Discard, multipart.MediaTypeDICOM)
	if err := w.SetBoundary("b0undary"); err != nil {
		t.Fatal(err)
	}
	if got, want := w.ContentType(), `multipart/related; type="application/dicom"; boundary=b0undary`; got != want {
		t.Errorf("ContentType() = %q, want %q", got, want)
	}
	ct, err := multipart.ParseSTOWContentType(w.ContentType())
	if err != nil || ct.Boundary != "b0undary" {
		t.Errorf("ParseSTOWContentType(ContentType()) = %+v, %v", ct, err)
	}
	_ = w.SetBoundary("with space")
	if ct, err := multipart.ParseSTOWContentType(w.ContentType()); err != nil || ct.Boundary != "with space" {
		t.Errorf("ParseSTOWContentType(%q) = %+v, %v", w.ContentType(), ct, err)
	}
}

type part struct {
	ContentType, ContentLocation string
	Body                         []byte
}

func readAll(t *testing.T, r *multipart.Reader) ([]part, error) {
	t.Helper()
	var parts []part
	for {
		p, err := r.NextPart()
		if err == io.EOF {
			return parts, nil
		}
		if err != nil {
			return parts, err
		}
		b, err := io.ReadAll(p)
		if err != nil {
			return parts, err
		}
		parts = append(parts, part{p.ContentType, p.ContentLocation, b})
	}
}

func TestWriterReader_RoundTripOfGeneratedStudy(t *testing.T) {
	t.Parallel()
	study := dicomtest.NewStudy(t, dicomtest.WithSeries(2), dicomtest.WithInstancesPerSeries(2))
	var body bytes.Buffer
	w := multipart.NewWriter(&body, multipart.MediaTypeDICOM)
	var want []part
	for i, in := range study.Instances() {
		loc := ""
		if i%2 == 0 {
			loc = "https://archive.example/studies/" + in.StudyInstanceUID + "/instances/" + in.SOPInstanceUID
		}
		if err := w.WritePart("", loc, bytes.NewReader(in.Bytes)); err != nil {
			t.Fatal(err)
		}
		want = append(want, part{multipart.MediaTypeDICOM, loc, in.Bytes})
	}
	if err := w.WritePart("application/dicom+json", "", strings.NewReader("[]")); err != nil {
		t.Fatal(err)
	}
	want = append(want, part{"application/dicom+json", "", []byte("[]")})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	ct, err := multipart.ParseSTOWContentType(w.ContentType())
	if err != nil {
		t.Fatal(err)
	}
	got, err := readAll(t, multipart.NewReader(&body, ct.Boundary, multipart.Limits{MaxPartSize: 1 << 20, MaxTotalSize: 8 << 20}))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("parts mismatch (-want +got):\n%s", diff)
	}
	for _, p := range got[:len(got)-1] {
		if _, err := dicomheader.Parse(bytes.NewReader(p.Body), int64(len(p.Body))); err != nil {
			t.Errorf("part does not parse as DICOM: %v", err)
		}
	}
}

func body(t *testing.T, sizes ...int) (*bytes.Buffer, string) {
	t.Helper()
	var b bytes.Buffer
	w := multipart.NewWriter(&b, multipart.MediaTypeDICOM)
	for i, n := range sizes {
		if err := w.WritePart("", fmt.Sprint(i), bytes.NewReader(bytes.Repeat([]byte{'x'}, n))); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return &b, w.Boundary()
}

func TestReader_Limits(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		sizes   []int
		limits  multipart.Limits
		want    int // parts read in full
		wantErr error
	}{
		{name: "part at the limit", sizes: []int{100, 100}, limits: multipart.Limits{MaxPartSize: 100}, want: 2},
		{name: "part over the limit", sizes: []int{100, 101}, limits: multipart.Limits{MaxPartSize: 100}, want: 1, wantErr: multipart.ErrPartTooLarge},
		{name: "body over the limit", sizes: []int{1000, 1000, 1000}, limits: multipart.Limits{MaxTotalSize: 1500}, want: 1, wantErr: multipart.ErrBodyTooLarge},
		{name: "no limits", sizes: []int{5000, 0, 1}, want: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b, boundary := body(t, tt.sizes...)
			got, err := readAll(t, multipart.NewReader(b, boundary, tt.limits))
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("error = %v, want %v", err, tt.wantErr)
			}
			if len(got) != tt.want {
				t.Errorf("read %d parts in full, want %d", len(got), tt.want)
			}
		})
	}
}

func TestReader_BodyLimitWhileSkippingUnreadPart(t *testing.T) {
	t.Parallel()
	b, boundary := body(t, 4000, 10)
	r := multipart.NewReader(b, boundary, multipart.Limits{MaxTotalSize: 1000})
	if _, err := r.NextPart(); err != nil {
		t.Fatal(err)
	}
	// Skip the content of the first part without reading it.
	if _, err := r.NextPart(); !errors.Is(err, multipart.ErrBodyTooLarge) {
		t.Errorf("NextPart() error = %v, want ErrBodyTooLarge", err)
	}
}

func TestReader_Malformed(t *testing.T) {
	t.Parallel()
	for name, in := range map[string]string{
		"no closing boundary": "--b\r\nContent-Type: application/dicom\r\n\r\nabc",
		"no parts":            "hello",
		"bad header":          "--b\r\nno colon here\r\n\r\nabc\r\n--b--\r\n",
	} {
		if _, err := readAll(t, multipart.NewReader(strings.NewReader(in), "b", multipart.Limits{})); err == nil {
			t.Errorf("%s: want an error", name)
		}
	}
}

func TestPart_MediaType(t *testing.T) {
	t.Parallel()
	in := "--b\r\nContent-Type: Application/DICOM; transfer-syntax=1.2.840.10008.1.2.1\r\n\r\nabc\r\n--b--\r\n"
	r := multipart.NewReader(strings.NewReader(in), "b", multipart.Limits{})
	p, err := r.NextPart()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := p.MediaType(), "application/dicom"; got != want {
		t.Errorf("MediaType() = %q, want %q", got, want)
	}
}

// FuzzReader checks that the reader never panics and never hands out more
// than the limits allow.
func FuzzReader(f *testing.F) {
	f.Add([]byte("--b\r\nContent-Type: application/dicom\r\nContent-Location: x\r\n\r\nabc\r\n--b\r\n\r\n\r\n--b--\r\n"), "b")
	f.Add([]byte("preamble\r\n--XYZ\r\nContent-Type: application/dicom\r\n\r\n"+strings.Repeat("z", 300)+"\r\n--XYZ--"), "XYZ")
	f.Add([]byte("--b\nContent-Type: text/plain\n\nline\n--b--\n"), "b")
	const maxPart, maxTotal = 256, 4096
	f.Fuzz(func(t *testing.T, in []byte, boundary string) {
		r := multipart.NewReader(bytes.NewReader(in), boundary, multipart.Limits{MaxPartSize: maxPart, MaxTotalSize: maxTotal})
		total := 0
		for range 1000 {
			p, err := r.NextPart()
			if err != nil {
				return
			}
			n, err := io.Copy(io.Discard, p)
			if n > maxPart {
				t.Fatalf("read %d bytes from a part, limit %d", n, maxPart)
			}
			total += int(n)
			if total > maxTotal {
				t.Fatalf("read %d bytes in all, limit %d", total, maxTotal)
			}
			if err != nil {
				return
			}
		}
	})
}
