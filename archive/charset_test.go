package archive_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"

	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/priorflow/priorflow/archive"
	"github.com/priorflow/priorflow/archive/archivetest"
	"github.com/priorflow/priorflow/archive/dicomtest"
	"github.com/priorflow/priorflow/internal/database/dbtest"
)

// TestStore_TextInNoDeclaredCharset: an object that declares no Specific
// Character Set but writes names in Latin-1, as older modalities do. Read
// as bytes, PostgreSQL refused its index rows (invalid UTF-8) on every
// try, so such a prior could never be loaded.
func TestStore_TextInNoDeclaredCharset(t *testing.T) {
	t.Parallel()
	env := archivetest.New(t, "http://pf.example/dicomweb")
	st := dicomtest.NewStudy(t, dicomtest.WithSeries(1), dicomtest.WithInstancesPerSeries(1), dicomtest.WithEdits(
		dicomtest.Remove(tag.SpecificCharacterSet),
		dicomtest.Set(tag.PatientID, "\xc4B1"),
		dicomtest.Set(tag.PatientName, "M\xdcLLER^JOS\xc9"),
		dicomtest.Set(tag.StudyDescription, "CT T\xcaTE"),
	))
	in := st.Instances()[0].Bytes

	// A site that refuses such text: a clear refusal, nothing stored.
	strict, err := archive.New(env.Store, env.Bucket, dbtest.Logger(), archive.Config{DICOMwebURL: "http://pf.example/dicomweb", SpoolDir: t.TempDir(), DefaultCharset: "ISO_IR 6"})
	if err != nil {
		t.Fatal(err)
	}
	o, err := strict.Spool(bytes.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(o.Remove)
	if !errors.Is(o.Err, archive.ErrInvalidObject) {
		t.Errorf("strict: spooled with error %v, want ErrInvalidObject", o.Err)
	}
	if n := env.BlobCount(t); n != 0 {
		t.Errorf("strict: %d blobs stored", n)
	}

	// The default reads it as ISO_IR 100.
	for _, r := range storeAll(t, env.Archive, st) {
		if r.Err != nil {
			t.Fatalf("store: %v", r.Err)
		}
	}
	is := imagingStudy(t, env, st.StudyInstanceUID)
	if is["description"] != "CT TÊTE" {
		t.Errorf("ImagingStudy.description %q", is["description"])
	}
	rows, _, err := env.Archive.SearchStudies(context.Background(), archive.Query{PatientID: "ÄB1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0].PatientName != "MÜLLER^JOSÉ" {
		t.Errorf("QIDO by PatientID ÄB1: %+v", rows)
	}
	// The original bytes are kept as they came.
	it := env.Bucket.List(nil)
	obj, err := it.Next(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	r, err := env.Archive.Open(context.Background(), obj.Key)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got, err := io.ReadAll(r)
	if err != nil || string(got) != string(in) {
		t.Errorf("stored object differs from the one sent (%v)", err)
	}
}

// TestSpool_PatientIDTheDeclaredSetCannotRead: an object that declares
// UTF-8 but writes its PatientID in Latin-1 would be filed under
// "\uFFFDB1", beside every other patient whose ID differs only there; it is
// refused instead.
func TestSpool_PatientIDTheDeclaredSetCannotRead(t *testing.T) {
	t.Parallel()
	env := archivetest.New(t, "http://pf.example/dicomweb")
	st := dicomtest.NewStudy(t, dicomtest.WithSeries(1), dicomtest.WithInstancesPerSeries(1), dicomtest.WithEdits(
		dicomtest.Set(tag.SpecificCharacterSet, "ISO_IR 192"),
		dicomtest.Set(tag.PatientID, "\xc4B1"),
	))
	for _, r := range storeAll(t, env.Archive, st) {
		if !errors.Is(r.Err, archive.ErrInvalidObject) {
			t.Errorf("store: %v, want ErrInvalidObject", r.Err)
		}
	}
	if n := env.BlobCount(t); n != 0 {
		t.Errorf("%d blobs stored", n)
	}
}

// TestStore_ControlCharacters: a NUL inside a study description made
// PostgreSQL refuse the index rows, and an SOH in a name made the Patient
// invalid, so such objects, which older modalities write, could never be
// stored, by STOW-RS or by the prefetcher. They are stored, the text read
// with U+FFFD where the character was; a patient ID holding one is refused
// and leaves nothing behind.
func TestStore_ControlCharacters(t *testing.T) {
	t.Parallel()
	env := archivetest.New(t, "http://pf.example/dicomweb")
	st := dicomtest.NewStudy(t, dicomtest.WithSeries(1), dicomtest.WithInstancesPerSeries(1), dicomtest.WithEdits(
		dicomtest.Set(tag.PatientID, "CC1"),
		dicomtest.Set(tag.StudyDescription, "CT\x00HEAD"),
		dicomtest.Set(tag.ReferringPhysicianName, "WHO\x00^DR"),
		dicomtest.Set(tag.PatientName, "DOE\x01^JOHN"),
	))
	for _, r := range storeAll(t, env.Archive, st) {
		if r.Err != nil {
			t.Fatalf("store: %v", r.Err)
		}
	}
	if is := imagingStudy(t, env, st.StudyInstanceUID); is["description"] != "CT\uFFFDHEAD" {
		t.Errorf("ImagingStudy.description %q", is["description"])
	}
	rows, _, err := env.Archive.SearchStudies(context.Background(), archive.Query{PatientID: "CC1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0].PatientName != "DOE\uFFFD^JOHN" {
		t.Errorf("QIDO by PatientID CC1: %+v", rows)
	}

	bad := dicomtest.NewStudy(t, dicomtest.WithSeries(1), dicomtest.WithInstancesPerSeries(1), dicomtest.WithEdits(
		dicomtest.Set(tag.PatientID, "CC\x002")))
	blobs := env.BlobCount(t)
	o, err := env.Archive.Spool(bytes.NewReader(bad.Instances()[0].Bytes))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(o.Remove)
	if !errors.Is(o.Err, archive.ErrInvalidObject) {
		t.Errorf("patient ID with a NUL: spooled with error %v, want ErrInvalidObject", o.Err)
	}
	if n := env.BlobCount(t); n != blobs {
		t.Errorf("patient ID with a NUL: %d blobs stored, want %d", n, blobs)
	}
}
