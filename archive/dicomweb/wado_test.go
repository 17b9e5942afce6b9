package dicomweb_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/priorflow/priorflow/archive/dicomjson"
	"github.com/priorflow/priorflow/archive/dicomtest"
)

// part is one part of a multipart/related response.
type part struct {
	contentType, location string
	body                  []byte
}

// parts checks that a response is multipart/related of the given type and
// returns its parts.
func parts(t *testing.T, resp *http.Response, body []byte, typ string) []part {
	t.Helper()
	mt, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/related" || params["type"] != typ {
		t.Fatalf("Content-Type %q, want multipart/related; type=%q", resp.Header.Get("Content-Type"), typ)
	}
	if ce := resp.Header.Get("Content-Encoding"); ce != "" {
		t.Errorf("Content-Encoding %q: DICOM must not be compressed", ce)
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	var out []part
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(p)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, part{p.Header.Get("Content-Type"), p.Header.Get("Content-Location"), b})
	}
}

type wadoStudies struct {
	*server
	ct, mr, cr *dicomtest.Study
	otSeries   *dicomtest.Study // a deflated series added to mr
}

func newWADOStudies(t *testing.T) *wadoStudies {
	t.Helper()
	s := &wadoStudies{server: newServer(t)}
	s.ct = dicomtest.NewStudy(t, dicomtest.WithModality("CT"), dicomtest.WithSeries(2), dicomtest.WithInstancesPerSeries(2))
	s.mr = dicomtest.NewStudy(t, dicomtest.WithPatient("P7", "", "ROE^RICHARD"), dicomtest.WithModality("MR"))
	s.otSeries = dicomtest.NewStudy(t, dicomtest.WithPatient("P7", "", "ROE^RICHARD"), dicomtest.WithModality("OT"),
		dicomtest.WithStudyInstanceUID(s.mr.StudyInstanceUID))
	s.cr = dicomtest.NewStudy(t, dicomtest.WithModality("CR")) // implicit VR, 7.5 MB
	s.store(t, s.ct, s.mr, s.otSeries, s.cr)
	return s
}

func (s *wadoStudies) instanceURL(in *dicomtest.Instance) string {
	return s.URL + "/studies/" + in.StudyInstanceUID + "/series/" + in.SeriesInstanceUID + "/instances/" + in.SOPInstanceUID
}

func TestWADO_RetrieveIsByteIdentical(t *testing.T) {
	t.Parallel()
	s := newWADOStudies(t)
	ctSe := s.ct.Series[1]
	tests := []struct {
		name, path string
		want       []*dicomtest.Instance
	}{
		{"study", "/studies/" + s.ct.StudyInstanceUID, s.ct.Instances()},
		{"study of two transfer syntaxes", "/studies/" + s.mr.StudyInstanceUID, append(s.mr.Instances(), s.otSeries.Instances()...)},
		{"series", "/studies/" + s.ct.StudyInstanceUID + "/series/" + ctSe.SeriesInstanceUID, ctSe.Instances},
		{"instance", "/studies/" + s.ct.StudyInstanceUID + "/series/" + ctSe.SeriesInstanceUID + "/instances/" + ctSe.Instances[1].SOPInstanceUID, ctSe.Instances[1:]},
		{"implicit VR instance of 7.5 MB", "/studies/" + s.cr.StudyInstanceUID, s.cr.Instances()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			resp, body := s.get(t, tt.path, `multipart/related; type="application/dicom"`)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%s %s", resp.Status, body)
			}
			got := parts(t, resp, body, "application/dicom")
			if len(got) != len(tt.want) {
				t.Fatalf("%d parts, want %d", len(got), len(tt.want))
			}
			// Series come in series number order (the two series of the
			// mixed study share number 1, so their order is by UID) and
			// instances in instance number order; match parts by location.
			byLoc := map[string]int{}
			for i, p := range got {
				byLoc[p.location] = i
			}
			last := -1
			for _, in := range tt.want {
				i, ok := byLoc[s.instanceURL(in)]
				if !ok {
					t.Errorf("no part for %s", s.instanceURL(in))
					continue
				}
				p := got[i]
				if want := "application/dicom; transfer-syntax=" + in.TransferSyntaxUID; p.contentType != want {
					t.Errorf("part %d Content-Type %q, want %q", i, p.contentType, want)
				}
				if !bytes.Equal(p.body, in.Bytes) {
					t.Errorf("part %d: %d bytes differ from the %d stored", i, len(p.body), len(in.Bytes))
				}
				if tt.name != "study of two transfer syntaxes" {
					if i < last {
						t.Errorf("part for %s comes before an earlier instance", in.SOPInstanceUID)
					}
					last = i
				}
			}
		})
	}
}

func TestWADO_RetrieveAccept(t *testing.T) {
	t.Parallel()
	s := newWADOStudies(t)
	in := s.ct.Instances()[0] // Explicit VR Little Endian
	path := "/studies/" + in.StudyInstanceUID + "/series/" + in.SeriesInstanceUID + "/instances/" + in.SOPInstanceUID
	tests := []struct {
		name   string
		accept []string
		status int
	}{
		{"no Accept", nil, 200},
		{"any", []string{"*/*"}, 200},
		{"multipart without type", []string{"multipart/related"}, 200},
		{"multipart dicom", []string{`multipart/related; type="application/dicom"`}, 200},
		{"unquoted type", []string{`multipart/related; type=application/dicom`}, 200},
		{"any transfer syntax", []string{`multipart/related; type="application/dicom"; transfer-syntax=*`}, 200},
		{"the stored transfer syntax", []string{`multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1`}, 200},
		{"another transfer syntax", []string{`multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.50`}, 406},
		{"another, then the stored one", []string{`multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.50, multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1; q=0.5`}, 200},
		{"JSON", []string{"application/dicom+json"}, 406},
		{"bare application/dicom", []string{"application/dicom"}, 406},
		{"octet-stream parts", []string{`multipart/related; type="application/octet-stream"`}, 406},
		{"any with q=0", []string{"*/*; q=0"}, 406},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			resp, body := s.get(t, path, tt.accept...)
			if resp.StatusCode != tt.status {
				t.Fatalf("Accept %q: %s %s, want %d", tt.accept, resp.Status, body, tt.status)
			}
			if tt.status == 406 && !bytes.Contains(body, []byte(`"reason"`)) {
				t.Errorf("406 without a reason: %s", body)
			}
		})
	}
	t.Run("a study of two syntaxes and one demanded", func(t *testing.T) {
		t.Parallel()
		resp, body := s.get(t, "/studies/"+s.mr.StudyInstanceUID, `multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1`)
		if resp.StatusCode != http.StatusNotAcceptable || !bytes.Contains(body, []byte("1.2.840.10008.1.2.1.99")) {
			t.Errorf("%s %s, want 406 naming the deflated instance's syntax", resp.Status, body)
		}
	})
}

func TestWADO_NotFoundAndBadUIDs(t *testing.T) {
	t.Parallel()
	s := newWADOStudies(t)
	st, se := s.ct.StudyInstanceUID, s.ct.Series[0].SeriesInstanceUID
	otherSe := s.mr.Series[0].SeriesInstanceUID
	sop := s.ct.Series[0].Instances[0].SOPInstanceUID
	tests := []struct {
		name, path string
		status     int
		reason     string
	}{
		{"unknown study", "/studies/1.2.3", 404, "no such study 1.2.3"},
		{"unknown study metadata", "/studies/1.2.3/metadata", 404, "no such study"},
		{"unknown series", "/studies/" + st + "/series/1.2.3", 404, "no such series 1.2.3"},
		{"series of another study", "/studies/" + st + "/series/" + otherSe, 404, "no such series"},
		{"unknown instance", "/studies/" + st + "/series/" + se + "/instances/1.2.3", 404, "no such instance 1.2.3"},
		{"unknown instance metadata", "/studies/" + st + "/series/" + se + "/instances/1.2.3/metadata", 404, "no such instance"},
		{"unknown instance bulkdata", "/studies/" + st + "/series/" + se + "/instances/1.2.3/bulkdata/7FE00010", 404, "no such instance"},
		{"absent element", "/studies/" + st + "/series/" + se + "/instances/" + sop + "/bulkdata/00091010", 404, "no element at 00091010"},
		{"bad bulk path", "/studies/" + st + "/series/" + se + "/instances/" + sop + "/bulkdata/7FE0", 400, "bulk data path"},
		{"escaped dots and slashes", "/studies/..%2F..%2Fetc", 400, "study is not a valid DICOM UID"},
		{"escaped slashes in series", "/studies/" + st + "/series/..%2F..", 400, "series is not a valid DICOM UID"},
		{"escaped slashes in instance", "/studies/" + st + "/series/" + se + "/instances/..%2F..%2F..%2Fpasswd/metadata", 400, "instance is not a valid DICOM UID"},
		{"letters", "/studies/1.2.abc", 400, "not a valid DICOM UID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			resp, body := s.get(t, tt.path)
			if resp.StatusCode != tt.status {
				t.Fatalf("GET %s: %s %s, want %d", tt.path, resp.Status, body, tt.status)
			}
			var e struct{ Reason string }
			if err := json.Unmarshal(body, &e); err != nil || !strings.Contains(e.Reason, tt.reason) {
				t.Errorf("reason %q, want it to contain %q", e.Reason, tt.reason)
			}
		})
	}
}

func TestWADO_Metadata(t *testing.T) {
	t.Parallel()
	s := newWADOStudies(t)
	t.Run("each level", func(t *testing.T) {
		t.Parallel()
		se := s.ct.Series[1]
		for _, tt := range []struct {
			path string
			want []*dicomtest.Instance
		}{
			{"/studies/" + s.ct.StudyInstanceUID + "/metadata", s.ct.Instances()},
			{"/studies/" + s.ct.StudyInstanceUID + "/series/" + se.SeriesInstanceUID + "/metadata", se.Instances},
			{"/studies/" + s.ct.StudyInstanceUID + "/series/" + se.SeriesInstanceUID + "/instances/" + se.Instances[0].SOPInstanceUID + "/metadata", se.Instances[:1]},
		} {
			resp, body := s.get(t, tt.path, "application/dicom+json")
			if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/dicom+json" {
				t.Fatalf("GET %s: %s %s", tt.path, resp.Status, resp.Header.Get("Content-Type"))
			}
			objs, err := dicomjson.Unmarshal(body)
			if err != nil {
				t.Fatalf("GET %s: %v", tt.path, err)
			}
			if len(objs) != len(tt.want) {
				t.Fatalf("GET %s: %d objects, want %d", tt.path, len(objs), len(tt.want))
			}
			for i, in := range tt.want {
				o := objs[i]
				for _, c := range []struct {
					t    tag.Tag
					want string
				}{
					{tag.SOPInstanceUID, in.SOPInstanceUID}, {tag.SeriesInstanceUID, in.SeriesInstanceUID},
					{tag.StudyInstanceUID, in.StudyInstanceUID}, {tag.SOPClassUID, in.SOPClassUID}, {tag.Modality, "CT"},
					{tag.Rows, "512"}, {tag.NumberOfFrames, "2"},
				} {
					if got := o.String(c.t); got != c.want {
						t.Errorf("GET %s object %d: %v = %q, want %q", tt.path, i, c.t, got, c.want)
					}
				}
				if _, ok := o.Attribute(tag.TransferSyntaxUID); ok {
					t.Errorf("metadata carries File Meta Information")
				}
			}
		}
	})
	t.Run("406 for XML", func(t *testing.T) {
		t.Parallel()
		resp, _ := s.get(t, "/studies/"+s.ct.StudyInstanceUID+"/metadata", `multipart/related; type="application/dicom+xml"`)
		if resp.StatusCode != http.StatusNotAcceptable {
			t.Errorf("%s, want 406", resp.Status)
		}
	})
}

// bulkURIs collects the BulkDataURIs of an object, nested ones included.
func bulkURIs(o dicomjson.Object) []string {
	var out []string
	for _, a := range o {
		if a.BulkDataURI != "" {
			out = append(out, a.BulkDataURI)
		}
		if a.VR == "SQ" {
			for _, v := range a.Value {
				if item, ok := v.(dicomjson.Object); ok {
					out = append(out, bulkURIs(item)...)
				}
			}
		}
	}
	return out
}

func TestWADO_BulkData(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	pet := dicomtest.NewStudy(t, dicomtest.WithModality("PT"))
	cr := dicomtest.NewStudy(t, dicomtest.WithModality("CR"))
	ot := dicomtest.NewStudy(t, dicomtest.WithModality("OT"))
	s.store(t, pet, cr, ot)

	in := pet.Instances()[0]
	_, body := s.get(t, "/studies/"+in.StudyInstanceUID+"/series/"+in.SeriesInstanceUID+"/instances/"+in.SOPInstanceUID+"/metadata")
	objs, err := dicomjson.Unmarshal(body)
	if err != nil {
		t.Fatal(err)
	}
	uris := bulkURIs(objs[0])
	wantIcon := s.URL + "/studies/" + in.StudyInstanceUID + "/series/" + in.SeriesInstanceUID + "/instances/" + in.SOPInstanceUID + "/bulkdata/00880200/0/7FE00010"
	if !strings.Contains(strings.Join(uris, " "), wantIcon) {
		t.Fatalf("BulkDataURIs %q lack the absolute icon URI %q", uris, wantIcon)
	}
	ds, err := dicom.Parse(bytes.NewReader(in.Bytes), int64(len(in.Bytes)), nil, dicom.SkipProcessingPixelDataValue())
	if err != nil {
		t.Fatal(err)
	}
	iconItem := ds.Elements[0]
	for _, e := range ds.Elements {
		if e.Tag == tag.IconImageSequence {
			iconItem = e
		}
	}
	var wantIconBytes []byte
	for _, e := range iconItem.Value.GetValue().([]*dicom.SequenceItemValue)[0].GetValue().([]*dicom.Element) {
		if e.Tag == tag.PixelData {
			wantIconBytes = dicom.MustGetPixelDataInfo(e.Value).UnprocessedValueData
		}
	}
	pixelData := func(t *testing.T, b []byte) []byte {
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
	uri := func(in *dicomtest.Instance, path string) string {
		return s.URL + "/studies/" + in.StudyInstanceUID + "/series/" + in.SeriesInstanceUID + "/instances/" + in.SOPInstanceUID + "/bulkdata/" + path
	}

	tests := []struct {
		name   string
		uri    string
		accept string
		single bool
		want   []byte
	}{
		{"icon from the metadata's BulkDataURI", wantIcon, `multipart/related; type="application/octet-stream"`, false, wantIconBytes},
		{"icon, any media type", wantIcon, "*/*", false, wantIconBytes},
		{"icon, single part", wantIcon, "application/octet-stream", true, wantIconBytes},
		{"implicit VR Pixel Data of 7.5 MB", uri(cr.Instances()[0], "7FE00010"), "", false, pixelData(t, cr.Instances()[0].Bytes)},
		{"deflated Pixel Data", uri(ot.Instances()[0], "7FE00010"), "application/octet-stream", true, pixelData(t, ot.Instances()[0].Bytes)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req, _ := http.NewRequest(http.MethodGet, tt.uri, nil)
			if tt.accept != "" {
				req.Header.Set("Accept", tt.accept)
			}
			resp, body := s.do(t, req)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%s %s", resp.Status, body)
			}
			got := body
			if tt.single {
				if ct := resp.Header.Get("Content-Type"); ct != "application/octet-stream" {
					t.Errorf("Content-Type %q, want application/octet-stream", ct)
				}
			} else {
				ps := parts(t, resp, body, "application/octet-stream")
				if len(ps) != 1 {
					t.Fatalf("%d parts, want 1", len(ps))
				}
				if ps[0].location != tt.uri {
					t.Errorf("Content-Location %q, want %q", ps[0].location, tt.uri)
				}
				got = ps[0].body
			}
			if len(tt.want) == 0 || !bytes.Equal(got, tt.want) {
				t.Errorf("%d bytes, want the %d of the element", len(got), len(tt.want))
			}
		})
	}
	t.Run("406 for other media types", func(t *testing.T) {
		t.Parallel()
		resp, _ := s.get(t, strings.TrimPrefix(wantIcon, s.URL), "image/jpeg")
		if resp.StatusCode != http.StatusNotAcceptable {
			t.Errorf("%s, want 406", resp.Status)
		}
	})
}

// An Icon Image Sequence a gateway left UN (PS3.5 6.2.2): the metadata
// shows it as the sequence it is, and the BulkDataURI of its Pixel Data
// reaches the value in the stored object, where the sequence is still UN
// with a defined length and its items are Implicit VR.
func TestWADO_BulkDataInASequenceHeldAsUN(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	le := binary.LittleEndian
	elem := func(t tag.Tag, value []byte) []byte {
		b := le.AppendUint16(le.AppendUint16(nil, t.Group), t.Element)
		return append(le.AppendUint32(b, uint32(len(value))), value...)
	}
	us := func(v uint16) []byte { return le.AppendUint16(nil, v) }
	pixels := make([]byte, 64)
	for i := range pixels {
		pixels[i] = byte(i * 4)
	}
	item := bytes.Join([][]byte{
		elem(tag.SamplesPerPixel, us(1)),
		elem(tag.PhotometricInterpretation, []byte("MONOCHROME2 ")),
		elem(tag.Rows, us(8)), elem(tag.Columns, us(8)),
		elem(tag.BitsAllocated, us(8)), elem(tag.BitsStored, us(8)), elem(tag.HighBit, us(7)),
		elem(tag.PixelRepresentation, us(0)),
		elem(tag.PixelData, pixels),
	}, nil)
	icon := append(le.AppendUint32([]byte{0xFE, 0xFF, 0x00, 0xE0}, uint32(len(item))), item...)
	st := dicomtest.NewStudy(t, dicomtest.WithInstancesPerSeries(1), dicomtest.WithEdits(dicomtest.SetUN(tag.IconImageSequence, icon)))
	s.store(t, st)
	in := st.Instances()[0]
	_, body := s.get(t, "/studies/"+in.StudyInstanceUID+"/series/"+in.SeriesInstanceUID+"/instances/"+in.SOPInstanceUID+"/metadata")
	objs, err := dicomjson.Unmarshal(body)
	if err != nil {
		t.Fatal(err)
	}
	want := s.URL + "/studies/" + in.StudyInstanceUID + "/series/" + in.SeriesInstanceUID + "/instances/" + in.SOPInstanceUID + "/bulkdata/00880200/0/7FE00010"
	if uris := bulkURIs(objs[0]); !slices.Contains(uris, want) {
		t.Fatalf("BulkDataURIs %q lack the icon's %q", uris, want)
	}
	req, _ := http.NewRequest(http.MethodGet, want, nil)
	req.Header.Set("Accept", "application/octet-stream")
	resp, got := s.do(t, req)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(got, pixels) {
		t.Errorf("%s, %d bytes; want 200 and the icon's 64 pixels", resp.Status, len(got))
	}
}
