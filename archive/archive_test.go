package archive_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/url"
	"os"
	"reflect"
	"slices"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/priorflow/priorflow/archive"
	"github.com/priorflow/priorflow/archive/archivetest"
	"github.com/priorflow/priorflow/archive/dicomheader"
	"github.com/priorflow/priorflow/archive/dicomtest"
	"github.com/priorflow/priorflow/fhir"
	"github.com/priorflow/priorflow/fhir/postgres"
	"github.com/priorflow/priorflow/fhir/search"
	"github.com/priorflow/priorflow/internal/database/dbtest"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

func spool(t *testing.T, a *archive.Archive, b []byte) *archive.Object {
	t.Helper()
	o, err := a.Spool(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(o.Remove)
	return o
}

func storeAll(t *testing.T, a *archive.Archive, st *dicomtest.Study) []archive.Result {
	t.Helper()
	var objs []*archive.Object
	for _, in := range st.Instances() {
		objs = append(objs, spool(t, a, in.Bytes))
	}
	return a.Store(context.Background(), objs, "")
}

// withSOPInstanceUID re-encodes a Part 10 file under another SOP Instance UID.
func withSOPInstanceUID(t *testing.T, b []byte, uid string) []byte {
	t.Helper()
	ds, err := dicom.Parse(bytes.NewReader(b), int64(len(b)), nil)
	if err != nil {
		t.Fatal(err)
	}
	ds = dicomtest.Edit(ds, dicomtest.Set(tag.SOPInstanceUID, uid), dicomtest.SetIfPresent(tag.MediaStorageSOPInstanceUID, uid))
	out, err := dicomtest.Encode(ds)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// searchStore returns what a FHIR search of typ with v finds in the store.
func searchStore(t *testing.T, env *archivetest.Env, typ string, v url.Values) []*fhir.Resource {
	t.Helper()
	reg := env.Store.Registry()
	q, err := search.Parse(reg, reg.Type(typ), v, search.Options{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := env.Store.Search(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	return res.Matches
}

func imagingStudy(t *testing.T, env *archivetest.Env, uid string) map[string]any {
	t.Helper()
	matches := searchStore(t, env, "ImagingStudy", url.Values{"identifier": {"urn:dicom:uid|urn:oid:" + uid}})
	if len(matches) != 1 {
		t.Fatalf("%d ImagingStudy for %s, want 1", len(matches), uid)
	}
	var m map[string]any
	if err := json.Unmarshal(matches[0].Body, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestStore_IndexesImagingStudy(t *testing.T) {
	t.Parallel()
	env := archivetest.New(t, "http://pf.example/dicomweb")
	st := dicomtest.NewStudy(t, dicomtest.WithPatient("MRN1", "HOSP-A", "DOE^JANE"), dicomtest.WithModality("CT"),
		dicomtest.WithSeries(2), dicomtest.WithInstancesPerSeries(3), dicomtest.WithAccession("ACC9"),
		dicomtest.WithStudyDate(time.Date(2022, 4, 5, 9, 30, 0, 0, time.UTC)))
	for _, r := range storeAll(t, env.Archive, st) {
		if r.Err != nil {
			t.Fatalf("store %s: %v", r.SOPInstanceUID, r.Err)
		}
	}
	is := imagingStudy(t, env, st.StudyInstanceUID)
	if got, want := is["numberOfSeries"], float64(2); got != want {
		t.Errorf("numberOfSeries = %v, want %v", got, want)
	}
	if got, want := is["numberOfInstances"], float64(6); got != want {
		t.Errorf("numberOfInstances = %v, want %v", got, want)
	}
	if ep := is["endpoint"].([]any)[0].(map[string]any)["reference"]; ep != "Endpoint/"+archive.LocalEndpointID {
		t.Errorf("endpoint = %v", ep)
	}
	ids := is["identifier"].([]any)
	if len(ids) != 2 || ids[1].(map[string]any)["value"] != "ACC9" {
		t.Errorf("identifiers = %v, want StudyInstanceUID and accession ACC9", ids)
	}
	mods := is["modality"].([]any)
	if len(mods) != 1 || mods[0].(map[string]any)["code"] != "CT" {
		t.Errorf("modality = %v", mods)
	}
	// The subject is a Patient carrying PatientID in the issuer's system.
	subj := is["subject"].(map[string]any)["reference"].(string)
	p, err := env.Store.Read(context.Background(), "Patient", subj[len("Patient/"):])
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(p.Body, []byte(`"system":"urn:priorflow:issuer:HOSP-A","value":"MRN1"`)) {
		t.Errorf("patient %s lacks the issuer identifier", p.Body)
	}
	if n := env.BlobCount(t); n != 6 {
		t.Errorf("%d blobs, want 6", n)
	}
}

func TestStore_ResendIsIdempotentAndConflictIsRefused(t *testing.T) {
	t.Parallel()
	env := archivetest.New(t, "http://pf.example/dicomweb")
	st := dicomtest.NewStudy(t, dicomtest.WithPatient("MRN2", "", "ROE^RICHARD"), dicomtest.WithInstancesPerSeries(2))
	storeAll(t, env.Archive, st)
	v1 := imagingStudy(t, env, st.StudyInstanceUID)["meta"].(map[string]any)["versionId"]
	for _, r := range storeAll(t, env.Archive, st) {
		if r.Err != nil || !r.Existed {
			t.Errorf("resend %s: err %v, existed %v; want idempotent", r.SOPInstanceUID, r.Err, r.Existed)
		}
	}
	if v := imagingStudy(t, env, st.StudyInstanceUID)["meta"].(map[string]any)["versionId"]; v != v1 {
		t.Errorf("resend made a new ImagingStudy version %v (was %v)", v, v1)
	}
	// A different object under an existing SOP Instance UID is refused.
	other := dicomtest.NewStudy(t, dicomtest.WithPatient("MRN2", "", "ROE^RICHARD"), dicomtest.WithStudyInstanceUID(st.StudyInstanceUID),
		dicomtest.WithStudyDescription("changed"))
	in := other.Instances()[0]
	b := withSOPInstanceUID(t, in.Bytes, st.Instances()[0].SOPInstanceUID)
	refused := spool(t, env.Archive, b)
	res := env.Archive.Store(context.Background(), []*archive.Object{refused}, "")
	if !errors.Is(res[0].Err, archive.ErrConflict) {
		t.Errorf("different object, same SOP Instance UID: err %v, want ErrConflict", res[0].Err)
	}
	if n := env.BlobCount(t); n != 2 {
		t.Errorf("%d blobs after the refused object, want 2", n)
	}
	// The refused object is still in the spool (the prefetcher quarantines
	// it from there), although the archive moved it into the blob store
	// before the index refused it.
	if got, err := os.ReadFile(refused.Path); err != nil || !bytes.Equal(got, b) {
		t.Errorf("the refused object's spool file: %v (%d bytes of %d)", err, len(got), len(b))
	}
}

func TestStore_StudyNeverChangesPatient(t *testing.T) {
	t.Parallel()
	env := archivetest.New(t, "http://pf.example/dicomweb")
	st := dicomtest.NewStudy(t, dicomtest.WithPatient("MRN3", "HOSP-A", "DOE^JANE"))
	storeAll(t, env.Archive, st)
	intruder := dicomtest.NewStudy(t, dicomtest.WithPatient("MRN4", "HOSP-A", "SMITH^JOHN"), dicomtest.WithStudyInstanceUID(st.StudyInstanceUID))
	for _, r := range storeAll(t, env.Archive, intruder) {
		if !errors.Is(r.Err, archive.ErrPatientMismatch) {
			t.Errorf("instance of another patient in the study: err %v, want ErrPatientMismatch", r.Err)
		}
	}
	if got := imagingStudy(t, env, st.StudyInstanceUID)["numberOfInstances"]; got != float64(len(st.Instances())) {
		t.Errorf("numberOfInstances = %v after refused instances", got)
	}
}

// An ImagingStudy an EHR app registered before the images came, naming
// its patient by this server's absolute URL, takes that patient's
// instances (they were refused as another patient's); one naming another
// server's patient of the same id does not.
func TestStore_SubjectByThisServersAbsoluteURL(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const base = "http://pf.example/fhir"
	env := archivetest.New(t, "http://pf.example/dicomweb")
	env.Store.SetBaseURL(base)
	patient := dicomtest.WithPatient("MRN6", "HOSP-A", "DOE^JANE")
	first := dicomtest.NewStudy(t, patient, dicomtest.WithInstancesPerSeries(1))
	storeAll(t, env.Archive, first)
	local := imagingStudy(t, env, first.StudyInstanceUID)["subject"].(map[string]any)["reference"].(string)
	register := func(st *dicomtest.Study, subject string) {
		t.Helper()
		b := []byte(`{"resourceType":"ImagingStudy","status":"registered",
		  "identifier":[{"system":"urn:dicom:uid","value":"urn:oid:` + st.StudyInstanceUID + `"}],
		  "subject":{"reference":"` + subject + `"}}`)
		msg, _, err := env.Store.Codec().Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		if err := env.Store.InTx(ctx, func(tx *postgres.Tx) error { _, err := tx.Create(ctx, msg); return err }); err != nil {
			t.Fatal(err)
		}
	}
	own := dicomtest.NewStudy(t, patient, dicomtest.WithInstancesPerSeries(1))
	register(own, base+"/"+local)
	for _, r := range storeAll(t, env.Archive, own) {
		if r.Err != nil {
			t.Errorf("registered under %s/%s: %v, want the instance stored", base, local, r.Err)
		}
	}
	foreign := dicomtest.NewStudy(t, patient, dicomtest.WithInstancesPerSeries(1))
	register(foreign, "https://other.example/fhir/"+local)
	for _, r := range storeAll(t, env.Archive, foreign) {
		if !errors.Is(r.Err, archive.ErrPatientMismatch) {
			t.Errorf("registered under another server's %s: %v, want ErrPatientMismatch", local, r.Err)
		}
	}
}

func TestStore_ConcurrentInstancesOfOneStudyEndWithExactCounts(t *testing.T) {
	t.Parallel()
	env := archivetest.New(t, "http://pf.example/dicomweb")
	st := dicomtest.NewStudy(t, dicomtest.WithPatient("MRN5", "", "DOE^JANE"), dicomtest.WithSeries(3), dicomtest.WithInstancesPerSeries(4))
	var wg sync.WaitGroup
	for _, in := range st.Instances() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o, err := env.Archive.Spool(bytes.NewReader(in.Bytes))
			if err != nil {
				t.Error(err)
				return
			}
			defer o.Remove()
			if r := env.Archive.Store(context.Background(), []*archive.Object{o}, ""); r[0].Err != nil {
				t.Errorf("store: %v", r[0].Err)
			}
		}()
	}
	wg.Wait()
	is := imagingStudy(t, env, st.StudyInstanceUID)
	if is["numberOfInstances"] != float64(12) || is["numberOfSeries"] != float64(3) {
		t.Errorf("counts %v/%v, want 3 series, 12 instances", is["numberOfSeries"], is["numberOfInstances"])
	}
}

func TestStore_BadObjectsLeaveNoTrace(t *testing.T) {
	t.Parallel()
	env := archivetest.New(t, "http://pf.example/dicomweb")
	for name, b := range map[string][]byte{
		"truncated":        dicomtest.BrokenTruncated(t),
		"no preamble":      dicomtest.BrokenNoPreamble(t),
		"no SOP UID":       dicomtest.BrokenMissingSOPInstanceUID(t),
		"traversal UID":    dicomtest.BrokenTraversalUID(t),
		"not DICOM at all": []byte("hello"),
	} {
		res := env.Archive.Store(context.Background(), []*archive.Object{spool(t, env.Archive, b)}, "")
		if !errors.Is(res[0].Err, archive.ErrInvalidObject) {
			t.Errorf("%s: err %v, want ErrInvalidObject", name, res[0].Err)
		}
	}
	if n := env.BlobCount(t); n != 0 {
		t.Errorf("%d blobs after bad objects, want 0", n)
	}
	var n int
	if err := env.Store.Pool().QueryRow(context.Background(), `SELECT count(*) FROM dicom_instance`).Scan(&n); err != nil || n != 0 {
		t.Errorf("%d instance rows (err %v), want 0", n, err)
	}
}

func TestDeleteStudy_RemovesIndexAndBlobs(t *testing.T) {
	t.Parallel()
	env := archivetest.New(t, "http://pf.example/dicomweb")
	st := dicomtest.NewStudy(t, dicomtest.WithPatient("MRN6", "", "DOE^JANE"), dicomtest.WithInstancesPerSeries(2))
	storeAll(t, env.Archive, st)
	if err := env.Archive.DeleteStudy(context.Background(), st.StudyInstanceUID); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Archive.StudyFHIRID(context.Background(), st.StudyInstanceUID); !errors.Is(err, archive.ErrNotFound) {
		t.Errorf("study still indexed: %v", err)
	}
	if n := env.BlobCount(t); n != 0 {
		t.Errorf("%d blobs after delete, want 0", n)
	}
	if err := env.Archive.DeleteStudy(context.Background(), st.StudyInstanceUID); !errors.Is(err, archive.ErrNotFound) {
		t.Errorf("second delete: %v, want ErrNotFound", err)
	}
}

// One request carrying two studies commits once; a study that fails inside
// the transaction fails alone and leaves no trace.
func TestStore_OneFailingStudyDoesNotFailTheRequest(t *testing.T) {
	t.Parallel()
	env := archivetest.New(t, "http://pf.example/dicomweb")
	first := dicomtest.NewStudy(t, dicomtest.WithPatient("MRN7", "", "DOE^JANE"))
	storeAll(t, env.Archive, first)
	intruder := dicomtest.NewStudy(t, dicomtest.WithPatient("MRN8", "", "ROE^RICHARD"), dicomtest.WithStudyInstanceUID(first.StudyInstanceUID))
	good := dicomtest.NewStudy(t, dicomtest.WithPatient("MRN9", "", "POE^EDGAR"), dicomtest.WithInstancesPerSeries(2))
	// A study whose second instance claims a series of another study: its
	// first instance is written, then the transaction is rolled back and the
	// other studies are indexed again without this one.
	clash := dicomtest.NewStudy(t, dicomtest.WithPatient("MRN10", "", "DOE^JOHN"), dicomtest.WithInstancesPerSeries(2))
	clashBytes := [][]byte{clash.Instances()[0].Bytes, withTag(t, clash.Instances()[1].Bytes, tag.SeriesInstanceUID, first.Series[0].SeriesInstanceUID)}
	var objs []*archive.Object
	for _, in := range append(intruder.Instances(), good.Instances()...) {
		objs = append(objs, spool(t, env.Archive, in.Bytes))
	}
	for _, b := range clashBytes {
		objs = append(objs, spool(t, env.Archive, b))
	}
	blobsBefore := env.BlobCount(t)
	res := env.Archive.Store(context.Background(), objs, "")
	for _, r := range res {
		want := r.StudyUID == good.StudyInstanceUID
		if (r.Err == nil) != want {
			t.Errorf("%s of study %s: err %v", r.SOPInstanceUID, r.StudyUID, r.Err)
		}
	}
	if got := imagingStudy(t, env, good.StudyInstanceUID)["numberOfInstances"]; got != float64(len(good.Instances())) {
		t.Errorf("good study: numberOfInstances %v", got)
	}
	if got, want := env.BlobCount(t), blobsBefore+len(good.Instances()); got != want {
		t.Errorf("%d blobs, want %d (the refused studies' blobs removed)", got, want)
	}
	if _, err := env.Archive.StudyFHIRID(context.Background(), clash.StudyInstanceUID); !errors.Is(err, archive.ErrNotFound) {
		t.Errorf("the rolled-back study left an index row: %v", err)
	}
}

// withTag re-encodes a Part 10 file with one string attribute changed.
func withTag(t *testing.T, b []byte, tg tag.Tag, v string) []byte {
	t.Helper()
	ds, err := dicom.Parse(bytes.NewReader(b), int64(len(b)), nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := dicomtest.Encode(dicomtest.Edit(ds, dicomtest.Set(tg, v)))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestSpool_CopiesExactlyAndFailsOnATruncatedSource checks the spool's
// buffered copy: the bytes and their hash are the object's, whatever the
// size of the reads, and a source that breaks off (a multipart part cut
// short reports io.ErrUnexpectedEOF) fails the spool instead of leaving a
// short object.
func TestSpool_CopiesExactlyAndFailsOnATruncatedSource(t *testing.T) {
	t.Parallel()
	env := archivetest.New(t, "http://pf.example/dicomweb")
	st := dicomtest.NewStudy(t, dicomtest.WithPatient("MRN7", "HOSP-A", "DOE^JANE"))
	in := st.Instances()[0].Bytes
	t.Run("bytes and hash kept through small reads", func(t *testing.T) {
		o, err := env.Archive.Spool(iotest.OneByteReader(bytes.NewReader(in)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(o.Remove)
		got, err := os.ReadFile(o.Path)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(in)
		if !bytes.Equal(got, in) || o.Size != int64(len(in)) || o.SHA256 != hex.EncodeToString(sum[:]) {
			t.Errorf("spooled %d bytes (hash %s), want the %d bytes of the object", len(got), o.SHA256, len(in))
		}
		if o.Err != nil || o.Header == nil || o.Header.SOPInstanceUID == "" {
			t.Errorf("header not parsed: %v", o.Err)
		}
	})
	t.Run("headers of small objects and of objects larger than a chunk", func(t *testing.T) {
		// A small object's header is parsed from the copy buffer, a larger
		// one's from the spooled file.
		for _, file := range []string{dicomtest.FileMR, dicomtest.FileCTMulti, dicomtest.FileOTDeflated} {
			raw := dicomtest.NewStudy(t, dicomtest.WithTemplate(file)).Instances()[0].Bytes
			want, err := dicomheader.Parse(bytes.NewReader(raw), int64(len(raw)))
			if err != nil {
				t.Fatal(err)
			}
			o := spool(t, env.Archive, raw)
			if o.Err != nil {
				t.Fatalf("%s: %v", file, o.Err)
			}
			if !reflect.DeepEqual(o.Header, want) {
				t.Errorf("%s (%d bytes): the spool parsed another header than the file's", file, len(raw))
			}
		}
	})
	t.Run("a source cut short fails the spool", func(t *testing.T) {
		r := io.MultiReader(bytes.NewReader(in[:len(in)/2]), iotest.ErrReader(io.ErrUnexpectedEOF))
		if o, err := env.Archive.Spool(r); !errors.Is(err, io.ErrUnexpectedEOF) {
			if o != nil {
				o.Remove()
			}
			t.Errorf("Spool of a truncated source: err = %v, want io.ErrUnexpectedEOF", err)
		}
	})
}

// A new study's ImagingStudy lists its series and instances in the order a
// later rebuild from the index rows gives them: numbers first, missing
// numbers last, then UIDs. The first request builds it from the headers it
// holds, the second reads the rows back.
func TestStore_NewStudyListedAsRebuiltFromRows(t *testing.T) {
	t.Parallel()
	env := archivetest.New(t, "http://pf.example/dicomweb")
	gen := dicomtest.NewGenerator(t)
	patient := dicomtest.WithPatient("MRN-ORDER", "", "ORDER^ODETTE")
	study := func(opts ...dicomtest.Option) *dicomtest.Study {
		st, err := gen.Study(append([]dicomtest.Option{patient}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	numbered := study(dicomtest.WithSeries(3), dicomtest.WithInstancesPerSeries(3))
	uid := dicomtest.WithStudyInstanceUID(numbered.StudyInstanceUID)
	unnumbered := study(uid, dicomtest.WithSeries(3), dicomtest.WithInstancesPerSeries(3),
		dicomtest.WithEdits(dicomtest.Remove(tag.SeriesNumber), dicomtest.Remove(tag.InstanceNumber)))
	var first []*archive.Object
	for _, st := range []*dicomtest.Study{unnumbered, numbered} {
		ins := st.Instances()
		for i := len(ins) - 1; i >= 0; i-- {
			first = append(first, spool(t, env.Archive, ins[i].Bytes))
		}
	}
	for _, r := range env.Archive.Store(context.Background(), first, "") {
		if r.Err != nil {
			t.Fatalf("store %s: %v", r.SOPInstanceUID, r.Err)
		}
	}
	listed := func() (series []string, instances [][]string) {
		for _, s := range imagingStudy(t, env, numbered.StudyInstanceUID)["series"].([]any) {
			s := s.(map[string]any)
			series = append(series, s["uid"].(string))
			var in []string
			for _, i := range s["instance"].([]any) {
				in = append(in, i.(map[string]any)["uid"].(string))
			}
			instances = append(instances, in)
		}
		return series, instances
	}
	built, builtInstances := listed()
	if len(built) != 6 {
		t.Fatalf("%d series listed, want 6", len(built))
	}

	later := study(uid, dicomtest.WithEdits(dicomtest.Set(tag.SeriesNumber, "99")))
	for _, r := range storeAll(t, env.Archive, later) {
		if r.Err != nil {
			t.Fatalf("store %s: %v", r.SOPInstanceUID, r.Err)
		}
	}
	rebuilt, rebuiltInstances := listed()
	k := slices.Index(rebuilt, later.Series[0].SeriesInstanceUID)
	if k < 0 {
		t.Fatalf("the later series is not listed: %v", rebuilt)
	}
	rebuilt, rebuiltInstances = slices.Delete(rebuilt, k, k+1), slices.Delete(rebuiltInstances, k, k+1)
	if !slices.Equal(built, rebuilt) {
		t.Errorf("series as built from the request:\n%v\nas rebuilt from the rows:\n%v", built, rebuilt)
	}
	for i := range built {
		if !slices.Equal(builtInstances[i], rebuiltInstances[i]) {
			t.Errorf("series %s: instances as built %v, as rebuilt %v", built[i], builtInstances[i], rebuiltInstances[i])
		}
	}
}

// A Japanese name (PS3.5 H.3.1) gives one HumanName per component group,
// marked with its representation, and a search finds the patient by each
// writing of the family name.
func TestStore_PatientNameInEachRepresentation(t *testing.T) {
	t.Parallel()
	env := archivetest.New(t, "http://pf.example/dicomweb")
	st := dicomtest.NewStudy(t, dicomtest.WithPatient("JP1", "", ""), dicomtest.WithInstancesPerSeries(1), dicomtest.WithEdits(
		dicomtest.Set(tag.SpecificCharacterSet, "", "ISO 2022 IR 87"),
		dicomtest.Set(tag.PatientName, "Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B=\x1b$B$d$^$@\x1b(B^\x1b$B$?$m$&\x1b(B")))
	for _, r := range storeAll(t, env.Archive, st) {
		if r.Err != nil {
			t.Fatalf("store %s: %v", r.SOPInstanceUID, r.Err)
		}
	}
	for _, v := range []url.Values{{"family": {"Yamada"}}, {"family": {"山田"}}, {"name": {"やまだ"}}, {"given": {"太郎"}}} {
		matches := searchStore(t, env, "Patient", v)
		if len(matches) != 1 {
			t.Errorf("Patient?%s found %d, want the patient", v.Encode(), len(matches))
			continue
		}
		var p struct {
			Name []struct {
				Text, Family string
				Extension    []struct{ URL, ValueCode string }
			}
		}
		if err := json.Unmarshal(matches[0].Body, &p); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, n := range p.Name {
			for _, x := range n.Extension {
				if x.URL == fhir.ENRepresentation {
					got = append(got, x.ValueCode+" "+n.Family+" "+n.Text)
				}
			}
		}
		if want := []string{"ABC Yamada Yamada^Tarou", "IDE 山田 山田^太郎", "SYL やまだ やまだ^たろう"}; !slices.Equal(got, want) {
			t.Errorf("names %q, want %q", got, want)
		}
	}
}
