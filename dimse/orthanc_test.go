package dimse_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/priorflow/priorflow/archive/dicomheader"
	"github.com/priorflow/priorflow/archive/dicomtest"
	"github.com/priorflow/priorflow/dimse"
	"github.com/priorflow/priorflow/internal/orthanctest"
)

// peer is an Orthanc and a client of its DICOM port.
func peer(t *testing.T) (*orthanctest.Orthanc, *dimse.Client) {
	t.Helper()
	o := orthanctest.Start(t)
	c := &dimse.Client{Addr: fmt.Sprintf("127.0.0.1:%d", o.Port),
		Config: dimse.Config{CallingAE: orthanctest.SCUAE, CalledAE: o.AET, IdleTimeout: 30 * time.Second}}
	return o, c
}

func str(ds dicom.Dataset, t tag.Tag) string {
	e, err := ds.FindElementByTag(t)
	if err != nil {
		return ""
	}
	v, _ := e.Value.GetValue().([]string)
	return string(bytes.TrimRight([]byte(join(v)), " \x00"))
}

func join(v []string) string {
	var b bytes.Buffer
	for i, s := range v {
		if i > 0 {
			b.WriteByte('\\')
		}
		b.WriteString(s)
	}
	return b.String()
}

func TestClient_Echo(t *testing.T) {
	t.Parallel()
	_, c := peer(t)
	if err := c.Echo(context.Background()); err != nil {
		t.Fatalf("Echo: %v", err)
	}
}

func TestAssociate_CalledAETitleRejected(t *testing.T) {
	t.Parallel()
	_, c := peer(t)
	c.Config.CalledAE = "NOT-ORTHANC"
	err := c.Echo(context.Background())
	var rj *dimse.RejectedError
	if !errors.As(err, &rj) {
		t.Fatalf("Echo to a wrong called AE title: %v, want a *RejectedError", err)
	}
	if !rj.Permanent || rj.Source != 1 || rj.Reason != 7 {
		t.Errorf("rejection = %+v, want permanent, by the service user, called AE title not recognized", rj)
	}
}

func TestClient_Find_StudyAndSeriesLevels(t *testing.T) {
	t.Parallel()
	o, c := peer(t)
	mine := dicomtest.NewStudy(t, dicomtest.WithPatient("DIMSE-1", "HOSP-A", "MÜLLER^ANNA"), dicomtest.WithModality("MR"),
		dicomtest.WithSeries(2), dicomtest.WithInstancesPerSeries(2), dicomtest.WithStudyDate(time.Date(2023, 5, 2, 9, 0, 0, 0, time.UTC)))
	older := dicomtest.NewStudy(t, dicomtest.WithPatient("DIMSE-1", "HOSP-A", "MÜLLER^ANNA"), dicomtest.WithModality("CT"),
		dicomtest.WithStudyDate(time.Date(2019, 1, 7, 9, 0, 0, 0, time.UTC)))
	other := dicomtest.NewStudy(t, dicomtest.WithPatient("DIMSE-2", "HOSP-A", "OTHER^ONE"), dicomtest.WithModality("MR"))
	for _, st := range []*dicomtest.Study{mine, older, other} {
		o.UploadStudy(t, st)
	}
	ctx := context.Background()

	var got []dicom.Dataset
	q := dimse.Identifier{
		{Tag: tag.SpecificCharacterSet, VR: "CS", Value: "ISO_IR 192"},
		{Tag: tag.QueryRetrieveLevel, VR: "CS", Value: "STUDY"},
		{Tag: tag.PatientID, VR: "LO", Value: "DIMSE-1"},
		{Tag: tag.PatientName, VR: "PN"},
		{Tag: tag.StudyDate, VR: "DA", Value: "20200101-"},
		{Tag: tag.StudyInstanceUID, VR: "UI"},
		{Tag: tag.ModalitiesInStudy, VR: "CS"},
		{Tag: tag.NumberOfStudyRelatedInstances, VR: "IS"},
	}
	err := c.Find(ctx, dimse.StudyRootFind, q, func(ds dicom.Dataset) error {
		got = append(got, ds)
		return nil
	})
	if err != nil {
		t.Fatalf("Find: %v", err)
	}
	if len(got) != 1 {
		t.Fatalf("Find returned %d studies, want 1 (the other patient's and the one before 2020 excluded)", len(got))
	}
	for _, c := range []struct {
		t    tag.Tag
		want string
	}{
		{tag.StudyInstanceUID, mine.StudyInstanceUID},
		{tag.PatientName, "MÜLLER^ANNA"},
		{tag.ModalitiesInStudy, "MR"},
		{tag.NumberOfStudyRelatedInstances, "4"},
	} {
		if g := str(got[0], c.t); g != c.want {
			t.Errorf("%s = %q, want %q", c.t, g, c.want)
		}
	}

	var series []string
	q = dimse.Identifier{
		{Tag: tag.QueryRetrieveLevel, VR: "CS", Value: "SERIES"},
		{Tag: tag.StudyInstanceUID, VR: "UI", Value: mine.StudyInstanceUID},
		{Tag: tag.SeriesInstanceUID, VR: "UI"},
		{Tag: tag.Modality, VR: "CS"},
	}
	err = c.Find(ctx, dimse.StudyRootFind, q, func(ds dicom.Dataset) error {
		series = append(series, str(ds, tag.SeriesInstanceUID))
		return nil
	})
	if err != nil {
		t.Fatalf("Find series: %v", err)
	}
	want := []string{mine.Series[0].SeriesInstanceUID, mine.Series[1].SeriesInstanceUID}
	slices.Sort(series)
	slices.Sort(want)
	if !slices.Equal(series, want) {
		t.Errorf("series = %v, want %v", series, want)
	}
}

func TestClient_Find_StoppedByCaller(t *testing.T) {
	t.Parallel()
	o, c := peer(t)
	for range 3 {
		o.UploadStudy(t, dicomtest.NewStudy(t, dicomtest.WithPatient("DIMSE-STOP", "HOSP-A", "STOP^ME")))
	}
	stop := errors.New("enough")
	n := 0
	q := dimse.Identifier{{Tag: tag.QueryRetrieveLevel, VR: "CS", Value: "STUDY"}, {Tag: tag.PatientID, VR: "LO", Value: "DIMSE-STOP"},
		{Tag: tag.StudyInstanceUID, VR: "UI"}}
	err := c.Find(context.Background(), dimse.StudyRootFind, q, func(dicom.Dataset) error {
		n++
		return stop
	})
	if !errors.Is(err, stop) || n != 1 {
		t.Fatalf("Find = %v after %d answers, want the caller's error after 1", err, n)
	}
	// The peer is unharmed: the next association works.
	if err := c.Echo(context.Background()); err != nil {
		t.Fatalf("Echo after an aborted C-FIND: %v", err)
	}
}

func TestClient_Find_UnknownCallingAE(t *testing.T) {
	t.Parallel()
	_, c := peer(t)
	c.Config.CallingAE = "STRANGER"
	q := dimse.Identifier{{Tag: tag.QueryRetrieveLevel, VR: "CS", Value: "STUDY"}, {Tag: tag.PatientID, VR: "LO", Value: "X"}}
	err := c.Find(context.Background(), dimse.StudyRootFind, q, func(dicom.Dataset) error { return nil })
	// Orthanc aborts the association of an AE title it does not know.
	var ab *dimse.AbortedError
	if !errors.As(err, &ab) {
		t.Fatalf("Find from an AE title Orthanc does not know = %v, want an *AbortedError", err)
	}
}

// received is what a C-GET brought: each object parsed, by SOP Instance UID.
type received struct {
	mu   sync.Mutex
	objs map[string]*dicomheader.Header
	raw  map[string][]byte
}

func (r *received) store(req *dimse.StoreRequest) (uint16, error) {
	b, err := io.ReadAll(req.Object)
	if err != nil {
		return 0, err
	}
	h, err := dicomheader.Parse(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		return dimse.StatusCannotUnderstand, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.objs[req.SOPInstanceUID] = h
	r.raw[req.SOPInstanceUID] = b
	return dimse.StatusSuccess, nil
}

func TestClient_Get_RealFiles(t *testing.T) {
	t.Parallel()
	o, c := peer(t)
	want := map[string]*dicomtest.Instance{}
	var studies []*dicomtest.Study
	for _, f := range dicomtest.Files {
		st := dicomtest.NewStudy(t, dicomtest.WithTemplate(f), dicomtest.WithPatient("DIMSE-GET", "HOSP-A", "GET^ME"))
		o.UploadStudy(t, st)
		studies = append(studies, st)
		for _, in := range st.Instances() {
			want[in.SOPInstanceUID] = in
		}
	}
	got := &received{objs: map[string]*dicomheader.Header{}, raw: map[string][]byte{}}
	for _, st := range studies {
		q := dimse.Identifier{{Tag: tag.QueryRetrieveLevel, VR: "CS", Value: "STUDY"},
			{Tag: tag.StudyInstanceUID, VR: "UI", Value: st.StudyInstanceUID}}
		res, err := c.Get(context.Background(), dimse.StudyRootGet, q, got.store)
		if err != nil {
			t.Fatalf("Get %s: %v", st.Series[0].Instances[0].TransferSyntaxUID, err)
		}
		if res.Status != dimse.StatusSuccess || res.Completed != len(st.Instances()) || res.Failed != 0 {
			t.Errorf("Get result = %+v, want success with %d completed", res, len(st.Instances()))
		}
	}
	if len(got.objs) != len(want) {
		t.Fatalf("received %d objects, want %d", len(got.objs), len(want))
	}
	for sop, in := range want {
		h := got.objs[sop]
		if h == nil {
			t.Errorf("instance %s not received", sop)
			continue
		}
		if h.StudyInstanceUID != in.StudyInstanceUID || h.SOPClassUID != in.SOPClassUID || h.PatientID != "DIMSE-GET" {
			t.Errorf("instance %s: study %s class %s patient %s, want %s %s DIMSE-GET", sop, h.StudyInstanceUID,
				h.SOPClassUID, h.PatientID, in.StudyInstanceUID, in.SOPClassUID)
		}
		// Implicit VR and deflated objects arrive in Explicit VR, the
		// first syntax proposed: the same values.
		if ts := h.TransferSyntaxUID; ts != in.TransferSyntaxUID && ts != dimse.ExplicitVRLittleEndian {
			t.Errorf("instance %s arrived in %s, was stored in %s", sop, ts, in.TransferSyntaxUID)
		}
		if g, w := dicomtest.PixelData(t, got.raw[sop]), dicomtest.PixelData(t, in.Bytes); !bytes.Equal(g, w) {
			t.Errorf("instance %s: pixel data of %d bytes differs from the %d stored", sop, len(g), len(w))
		}
	}
}

// A compressed object comes back in its own syntax, its encapsulated
// pixel data unchanged: the second context of each storage class proposes
// the encapsulated syntaxes.
func TestClient_Get_KeepsJPEGLossless(t *testing.T) {
	t.Parallel()
	o, c := peer(t)
	dcmcjpeg, err := exec.LookPath("dcmcjpeg")
	if err != nil {
		t.Fatal("dcmcjpeg is not installed: run make deps (apt-get install -y dcmtk)")
	}
	st := dicomtest.NewStudy(t, dicomtest.WithTemplate(dicomtest.FileMR), dicomtest.WithPatient("DIMSE-JPEG", "HOSP-A", "JPEG^ME"))
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.dcm"), filepath.Join(dir, "out.dcm")
	if err := os.WriteFile(in, st.Instances()[0].Bytes, 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command(dcmcjpeg, in, out).CombinedOutput(); err != nil {
		t.Fatalf("dcmcjpeg: %v\n%s", err, b)
	}
	jpeg, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	o.Upload(t, jpeg)
	got := &received{objs: map[string]*dicomheader.Header{}, raw: map[string][]byte{}}
	q := dimse.Identifier{{Tag: tag.QueryRetrieveLevel, VR: "CS", Value: "STUDY"}, {Tag: tag.StudyInstanceUID, VR: "UI", Value: st.StudyInstanceUID}}
	if _, err := c.Get(context.Background(), dimse.StudyRootGet, q, got.store); err != nil {
		t.Fatalf("Get: %v", err)
	}
	sop := st.Instances()[0].SOPInstanceUID
	h := got.objs[sop]
	if h == nil {
		t.Fatalf("instance not received (got %d)", len(got.objs))
	}
	const jpegLossless = "1.2.840.10008.1.2.4.70"
	if h.TransferSyntaxUID != jpegLossless {
		t.Errorf("arrived in %s, want %s as stored", h.TransferSyntaxUID, jpegLossless)
	}
	if g, w := dicomtest.PixelData(t, got.raw[sop]), dicomtest.PixelData(t, jpeg); len(w) == 0 || !bytes.Equal(g, w) {
		t.Errorf("encapsulated pixel data of %d bytes differs from the %d stored", len(g), len(w))
	}
}

// An object of a SOP class the C-GET did not propose cannot be sent: the
// peer counts it as a failed sub-operation and names it. (Orthanc stops
// the C-GET there; retrieve asks for the others without it.)
func TestClient_Get_ClassNotProposed(t *testing.T) {
	t.Parallel()
	o, c := peer(t)
	st := dicomtest.NewStudy(t, dicomtest.WithPatient("DIMSE-PRIV", "HOSP-A", "PRIV^ATE"), dicomtest.WithInstancesPerSeries(2))
	odd := dicomtest.NewStudy(t, dicomtest.WithPatient("DIMSE-PRIV", "HOSP-A", "PRIV^ATE"), dicomtest.WithStudyInstanceUID(st.StudyInstanceUID),
		dicomtest.WithSOPClass(dicomtest.PrivateSOPClassUID)).Instances()[0]
	o.UploadStudy(t, st)
	o.Upload(t, odd.Bytes)
	got := &received{objs: map[string]*dicomheader.Header{}, raw: map[string][]byte{}}
	q := dimse.Identifier{{Tag: tag.QueryRetrieveLevel, VR: "CS", Value: "STUDY"}, {Tag: tag.StudyInstanceUID, VR: "UI", Value: st.StudyInstanceUID}}
	res, err := c.Get(context.Background(), dimse.StudyRootGet, q, got.store)
	// Orthanc ends the C-GET with status 0xC000 (unable to process) where
	// PS3.4 has 0xB000 (sub-operations complete, one or more failures),
	// and writes the failed UIDs into the command set (dimse.Command.Extra).
	var se *dimse.StatusError
	if err != nil && !errors.As(err, &se) || res == nil {
		t.Fatalf("Get: %+v, %v", res, err)
	}
	if res.Failed != 1 || got.objs[odd.SOPInstanceUID] != nil {
		t.Errorf("result %+v, received %d objects; want 1 failed, the odd one not received", res, len(got.objs))
	}
	if !slices.Equal(res.FailedSOPInstanceUIDs, []string{odd.SOPInstanceUID}) {
		t.Errorf("failed UIDs %v, want %s", res.FailedSOPInstanceUIDs, odd.SOPInstanceUID)
	}
}
