package dicomweb_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	_ "image/jpeg"
	_ "image/png"
	"io"
	"mime"
	"mime/multipart"
	"strings"
	"testing"

	"github.com/priorflow/priorflow/archive/dicomtest"
)

func instancePath(st *dicomtest.Study, series, inst int) string {
	se := st.Series[series]
	return fmt.Sprintf("/studies/%s/series/%s/instances/%s", st.StudyInstanceUID, se.SeriesInstanceUID, se.Instances[inst].SOPInstanceUID)
}

func decodeImage(t *testing.T, b []byte) (image.Image, string) {
	t.Helper()
	img, format, err := image.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("not an image: %v (%d bytes)", err, len(b))
	}
	return img, format
}

func TestRendered_InstanceJPEGAndPNG(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	st := dicomtest.NewStudy(t, dicomtest.WithPatient("R1", "", "RENDER^PAT"), dicomtest.WithTemplate(dicomtest.FileMR))
	s.store(t, st)
	p := instancePath(st, 0, 0)

	resp, body := s.get(t, p+"/rendered")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/jpeg" {
		t.Fatalf("rendered: %d %s %.200s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	img, format := decodeImage(t, body)
	if format != "jpeg" || img.Bounds().Dx() == 0 {
		t.Errorf("rendered %s %v", format, img.Bounds())
	}
	full := img.Bounds()

	resp, body = s.get(t, p+"/rendered?viewport=64,64", "image/png")
	if resp.StatusCode != 200 {
		t.Fatalf("png: %d %s", resp.StatusCode, body)
	}
	img, format = decodeImage(t, body)
	if format != "png" || img.Bounds().Dx() > 64 || img.Bounds().Dy() > 64 {
		t.Errorf("viewport 64: %s %v (full %v)", format, img.Bounds(), full)
	}

	resp, body = s.get(t, p+"/frames/1/rendered?window=100,50")
	if resp.StatusCode != 200 {
		t.Errorf("frame rendered with window: %d %s", resp.StatusCode, body)
	}
	if resp, _ := s.get(t, p+"/rendered", "application/pdf"); resp.StatusCode != 406 {
		t.Errorf("rendered as pdf: %d, want 406", resp.StatusCode)
	}
	if resp, _ := s.get(t, p+"/rendered?window=bogus"); resp.StatusCode != 400 {
		t.Errorf("bad window: %d, want 400", resp.StatusCode)
	}
	if resp, _ := s.get(t, p+"/frames/9/rendered"); resp.StatusCode != 404 {
		t.Errorf("frame 9 of a 1-frame instance: %d, want 404", resp.StatusCode)
	}
}

func TestThumbnail_StudySeriesInstance(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	st := dicomtest.NewStudy(t, dicomtest.WithPatient("R2", "", "THUMB^PAT"), dicomtest.WithTemplate(dicomtest.FileCTMulti), dicomtest.WithInstancesPerSeries(3))
	s.store(t, st)
	for _, p := range []string{
		"/studies/" + st.StudyInstanceUID + "/thumbnail",
		fmt.Sprintf("/studies/%s/series/%s/thumbnail", st.StudyInstanceUID, st.Series[0].SeriesInstanceUID),
		instancePath(st, 0, 1) + "/thumbnail",
		instancePath(st, 0, 1) + "/frames/2/thumbnail",
	} {
		resp, body := s.get(t, p)
		if resp.StatusCode != 200 {
			t.Errorf("%s: %d %.200s", p, resp.StatusCode, body)
			continue
		}
		img, _ := decodeImage(t, body)
		if b := img.Bounds(); b.Dx() > 128 || b.Dy() > 128 || b.Dx() == 0 {
			t.Errorf("%s: thumbnail %v, want within 128x128", p, b)
		}
	}
}

func TestFrames_NativeOctetStream(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	st := dicomtest.NewStudy(t, dicomtest.WithPatient("R3", "", "FRAMES^PAT"), dicomtest.WithTemplate(dicomtest.FileCTMulti))
	s.store(t, st)
	p := instancePath(st, 0, 0)
	resp, body := s.get(t, p+"/frames/1,2")
	if resp.StatusCode != 200 {
		t.Fatalf("frames: %d %s", resp.StatusCode, body)
	}
	mt, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/related" || params["type"] != "application/octet-stream" {
		t.Fatalf("Content-Type %q", resp.Header.Get("Content-Type"))
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	var sizes []int
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(part)
		sizes = append(sizes, len(b))
	}
	if len(sizes) != 2 || sizes[0] != sizes[1] || sizes[0] == 0 {
		t.Errorf("frame sizes %v, want two equal non-empty frames", sizes)
	}
	if resp, _ := s.get(t, p+"/frames/0"); resp.StatusCode != 400 {
		t.Errorf("frame 0: %d, want 400", resp.StatusCode)
	}
	if resp, _ := s.get(t, p+"/frames/3"); resp.StatusCode != 404 {
		t.Errorf("frame 3 of 2: %d, want 404", resp.StatusCode)
	}
	if resp, _ := s.get(t, p+"/frames/1", `multipart/related; type="image/jpeg"`); resp.StatusCode != 406 {
		t.Errorf("native frames as jpeg: %d, want 406", resp.StatusCode)
	}
}

// The metadata names the Pixel Data by a BulkDataURI that serves the pixels.
func TestMetadata_PixelDataBulkDataURI(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	st := dicomtest.NewStudy(t, dicomtest.WithPatient("R4", "", "META^PAT"), dicomtest.WithTemplate(dicomtest.FileMR))
	s.store(t, st)
	resp, body := s.get(t, instancePath(st, 0, 0)+"/metadata")
	if resp.StatusCode != 200 {
		t.Fatalf("metadata: %d %s", resp.StatusCode, body)
	}
	var md []map[string]map[string]any
	if err := json.Unmarshal(body, &md); err != nil || len(md) != 1 {
		t.Fatalf("metadata: %v %s", err, body)
	}
	uri, _ := md[0]["7FE00010"]["BulkDataURI"].(string)
	if !strings.HasPrefix(uri, s.URL+"/studies/") {
		t.Fatalf("Pixel Data BulkDataURI %q", uri)
	}
	resp, px := s.get(t, strings.TrimPrefix(uri, s.URL), "application/octet-stream")
	if resp.StatusCode != 200 || len(px) == 0 {
		t.Errorf("Pixel Data bulk: %d, %d bytes", resp.StatusCode, len(px))
	}
}
