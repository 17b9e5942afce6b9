package bulkdata_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"testing"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/priorflow/priorflow/archive/bulkdata"
	"github.com/priorflow/priorflow/archive/dicomjson"
	"github.com/priorflow/priorflow/archive/dicomtest"
)

// pixelBytes returns the raw Pixel Data value of a test object as the
// library reads it.
func pixelBytes(t *testing.T, b []byte) []byte {
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

func find(t *testing.T, b []byte, path string) ([]byte, *bulkdata.Value, error) {
	t.Helper()
	p, err := bulkdata.ParsePath(path)
	if err != nil {
		t.Fatal(err)
	}
	v, err := bulkdata.Find(bytes.NewReader(b), p)
	if err != nil {
		return nil, nil, err
	}
	got, err := io.ReadAll(v)
	if err != nil {
		return nil, nil, err
	}
	return got, v, nil
}

func TestFind_TopLevelPixelDataOfEachTransferSyntax(t *testing.T) {
	t.Parallel()
	for _, name := range []string{dicomtest.FileMR, dicomtest.FileCR, dicomtest.FileCTMulti, dicomtest.FilePET1} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b, err := os.ReadFile(dicomtest.TestdataPath(t, name))
			if err != nil {
				t.Fatal(err)
			}
			got, v, err := find(t, b, "7FE00010")
			if err != nil {
				t.Fatal(err)
			}
			want := pixelBytes(t, b)
			if !bytes.Equal(got, want) {
				t.Errorf("Pixel Data: %d bytes, want the library's %d bytes", len(got), len(want))
			}
			if v.Length != int64(len(want)) || (v.VR != "OW" && v.VR != "OB") {
				t.Errorf("Length %d VR %q, want %d and OW or OB", v.Length, v.VR, len(want))
			}
		})
	}
}

func TestFind_DeflatedObject(t *testing.T) {
	t.Parallel()
	st := dicomtest.NewStudy(t, dicomtest.WithModality("OT"))
	b := st.Instances()[0].Bytes
	got, _, err := find(t, b, "7FE00010")
	if err != nil {
		t.Fatal(err)
	}
	if want := pixelBytes(t, b); !bytes.Equal(got, want) {
		t.Errorf("deflated Pixel Data: %d bytes, want %d", len(got), len(want))
	}
}

func TestFind_NestedIconPixelData(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(dicomtest.TestdataPath(t, dicomtest.FilePET1))
	if err != nil {
		t.Fatal(err)
	}
	ds, err := dicom.Parse(bytes.NewReader(b), int64(len(b)), nil, dicom.SkipProcessingPixelDataValue())
	if err != nil {
		t.Fatal(err)
	}
	icon, err := ds.FindElementByTag(tag.IconImageSequence)
	if err != nil {
		t.Fatal(err)
	}
	item := icon.Value.GetValue().([]*dicom.SequenceItemValue)[0]
	var want []byte
	for _, e := range item.GetValue().([]*dicom.Element) {
		if e.Tag == tag.PixelData {
			want = dicom.MustGetPixelDataInfo(e.Value).UnprocessedValueData
		}
	}
	got, _, err := find(t, b, "00880200/0/7FE00010")
	if err != nil {
		t.Fatal(err)
	}
	if len(want) == 0 || !bytes.Equal(got, want) {
		t.Errorf("icon Pixel Data: %d bytes, want %d", len(got), len(want))
	}
}

func TestFind_Errors(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(dicomtest.TestdataPath(t, dicomtest.FilePET1))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path string
		data       []byte
		want       error
	}{
		{"absent element", "00091010", b, bulkdata.ErrNotFound},
		{"item past the end", "00880200/5/7FE00010", b, bulkdata.ErrNotFound},
		{"absent element in item", "00880200/0/00091010", b, bulkdata.ErrNotFound},
		{"not Part 10", "7FE00010", []byte("hello"), bulkdata.ErrMalformed},
		{"truncated", "7FE00010", b[:len(b)/2], bulkdata.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, _, err := find(t, tt.data, tt.path)
			if !errors.Is(err, tt.want) {
				t.Errorf("Find(%s) err = %v, want %v", tt.path, err, tt.want)
			}
		})
	}
}

func TestParsePath(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want string // "" for an error
	}{
		{"7FE00010", "7FE00010"},
		{"7fe00010", "7FE00010"},
		{"00880200/0/7FE00010", "00880200/0/7FE00010"},
		{"00880200/12/00540013/0/7FE00010", "00880200/12/00540013/0/7FE00010"},
		{"", ""},
		{"7FE0001", ""},
		{"7FE00010/", ""},
		{"00880200/0", ""},
		{"00880200/-1/7FE00010", ""},
		{"00880200/01/7FE00010", ""},
		{"00880200/x/7FE00010", ""},
		{"..%2F..", ""},
		{"GGGGGGGG", ""},
	}
	for _, tt := range tests {
		p, err := bulkdata.ParsePath(tt.in)
		switch {
		case tt.want == "" && err == nil:
			t.Errorf("ParsePath(%q) = %v, want an error", tt.in, p)
		case tt.want != "" && err != nil:
			t.Errorf("ParsePath(%q) err = %v", tt.in, err)
		case tt.want != "" && p.String() != tt.want:
			t.Errorf("ParsePath(%q) = %s, want %s", tt.in, p, tt.want)
		}
	}
}

// FuzzFind feeds arbitrary bytes and paths to Find, which must never panic
// nor claim more bytes than the stream holds.
func FuzzFind(f *testing.F) {
	for _, name := range []string{dicomtest.FilePET1, dicomtest.FileMR} {
		b, err := os.ReadFile(dicomtest.TestdataPath(f, name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b[:4096], "00880200/0/7FE00010")
		f.Add(b[:2048], "00100010")
	}
	f.Add([]byte("DICM"), "7FE00010")
	f.Fuzz(func(t *testing.T, data []byte, path string) {
		p, err := bulkdata.ParsePath(path)
		if err != nil {
			return
		}
		v, err := bulkdata.Find(bytes.NewReader(data), p)
		if err != nil {
			return
		}
		n, _ := io.Copy(io.Discard, v)
		if n > v.Length || n > int64(len(data)) {
			t.Fatalf("read %d bytes of a value of %d from %d bytes", n, v.Length, len(data))
		}
		_ = dicomjson.Path(p).String()
	})
}
