package archive_test

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"github.com/priorflow/priorflow/archive"
	"github.com/priorflow/priorflow/archive/archivetest"
	"github.com/priorflow/priorflow/archive/dicomtest"
	"github.com/priorflow/priorflow/internal/database/dbtest"
)

func TestFileRoot(t *testing.T) {
	for url, want := range map[string]string{
		"file:///var/lib/priorflow/blobs?create_dir=1&metadata=skip": "/var/lib/priorflow/blobs",
		"file:///data/blobs/?metadata=skip":                          "/data/blobs",
		"file:///data/blobs":                                         "", // sidecar files: fileblob must write them
		"file:///data/blobs?metadata=":                               "",
		"s3://bucket?region=eu-west-1&metadata=skip":                 "",
		"file://host/data?metadata=skip":                             "",
		"%zz":                                                        "",
	} {
		if got := archive.FileRoot(url); got != want {
			t.Errorf("FileRoot(%q) = %q, want %q", url, got, want)
		}
	}
}

// Without a file root (S3, or a spool on another filesystem) objects are
// copied through the bucket.
func TestStore_CopiesWithoutFileRoot(t *testing.T) {
	t.Parallel()
	env := archivetest.New(t, "http://pf.example/dicomweb")
	a, err := archive.New(env.Store, env.Bucket, dbtest.Logger(), archive.Config{DICOMwebURL: "http://pf.example/dicomweb", SpoolDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	st := dicomtest.NewStudy(t, dicomtest.WithPatient("MRN-COPY", "", "COPY^CAT"), dicomtest.WithInstancesPerSeries(2))
	for i, r := range storeAll(t, a, st) {
		if r.Err != nil || r.Existed {
			t.Fatalf("instance %d: err %v, existed %v", i, r.Err, r.Existed)
		}
	}
	ins, err := a.Instances(context.Background(), st.StudyInstanceUID, "", "")
	if err != nil || len(ins) != 2 {
		t.Fatalf("instances: %v, %d", err, len(ins))
	}
	want := map[string][]byte{}
	for _, in := range st.Instances() {
		want[in.SOPInstanceUID] = in.Bytes
	}
	for _, in := range ins {
		r, err := a.Open(context.Background(), in.BlobKey)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r)
		r.Close()
		if err != nil || string(got) != string(want[in.SOPInstanceUID]) {
			t.Errorf("blob of %s: %v, %d bytes, want the %d sent", in.SOPInstanceUID, err, len(got), len(want[in.SOPInstanceUID]))
		}
	}
}

// One request holding an instance twice stores it once; holding two
// different objects under one SOP Instance UID refuses the second.
func TestStore_SameInstanceTwiceInOneRequest(t *testing.T) {
	t.Parallel()
	env := archivetest.New(t, "http://pf.example/dicomweb")
	st := dicomtest.NewStudy(t, dicomtest.WithPatient("MRN-TWICE", "", "TWICE^TOM"), dicomtest.WithInstancesPerSeries(2))
	in := st.Instances()
	other := withSOPInstanceUID(t, in[1].Bytes, in[0].SOPInstanceUID)
	objs := []*archive.Object{spool(t, env.Archive, in[0].Bytes), spool(t, env.Archive, in[0].Bytes), spool(t, env.Archive, other)}
	res := env.Archive.Store(context.Background(), objs, "")
	if res[0].Err != nil || res[0].Existed {
		t.Errorf("first copy: err %v, existed %v; want stored", res[0].Err, res[0].Existed)
	}
	if res[1].Err != nil || !res[1].Existed {
		t.Errorf("second copy: err %v, existed %v; want existed", res[1].Err, res[1].Existed)
	}
	if !errors.Is(res[2].Err, archive.ErrConflict) {
		t.Errorf("other object under the same UID: err %v, want ErrConflict", res[2].Err)
	}
	if got := imagingStudy(t, env, st.StudyInstanceUID)["numberOfInstances"]; got != float64(1) {
		t.Errorf("numberOfInstances = %v, want 1", got)
	}
	if n := env.BlobCount(t); n != 1 {
		t.Errorf("%d blobs, want 1", n)
	}
}

// Every file put into the file root, and every directory above it, is
// synced before the index commits the instance; a failed sync refuses the
// objects, indexes nothing and gives the spooled files back.
func TestStore_SyncsFilesBeforeIndexing(t *testing.T) {
	t.Parallel()
	env := archivetest.New(t, "http://pf.example/dicomweb")
	// Two studies in one request: neither is indexed before both are synced.
	st := dicomtest.NewStudy(t, dicomtest.WithPatient("MRN-SYNC", "", "SYNC^SAM"), dicomtest.WithInstancesPerSeries(2))
	st2 := dicomtest.NewStudy(t, dicomtest.WithPatient("MRN-SYNC", "", "SYNC^SAM"))

	var mu sync.Mutex
	synced := map[string]bool{}
	indexedAtSync := 0
	env.Archive.SetSync(func(path string) error {
		var n int
		if err := env.Store.Pool().QueryRow(context.Background(), `SELECT count(*) FROM dicom_instance`).Scan(&n); err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		synced[path] = true
		indexedAtSync += n
		return nil
	})
	var objs []*archive.Object
	for _, in := range append(st.Instances(), st2.Instances()...) {
		objs = append(objs, spool(t, env.Archive, in.Bytes))
	}
	for i, r := range env.Archive.Store(context.Background(), objs, "") {
		if r.Err != nil {
			t.Fatalf("instance %d: %v", i, r.Err)
		}
	}
	ins, err := env.Archive.Instances(context.Background(), st.StudyInstanceUID, "", "")
	if err != nil || len(ins) != 2 {
		t.Fatalf("instances: %v, %d", err, len(ins))
	}
	ins2, err := env.Archive.Instances(context.Background(), st2.StudyInstanceUID, "", "")
	if err != nil || len(ins2) != 1 {
		t.Fatalf("instances of the second study: %v, %d", err, len(ins2))
	}
	ins = append(ins, ins2...)
	var want []string
	for _, in := range ins {
		f := filepath.Join(env.BlobDir, filepath.FromSlash(in.BlobKey))
		for p := f; p != filepath.Dir(env.BlobDir); p = filepath.Dir(p) {
			want = append(want, p)
		}
	}
	for _, p := range want {
		if !synced[p] {
			t.Errorf("%s not synced", p)
		}
	}
	if indexedAtSync != 0 {
		t.Errorf("instances were indexed before their files were synced")
	}

	failing := dicomtest.NewStudy(t, dicomtest.WithPatient("MRN-SYNC-FAIL", "", "FAIL^FRED"))
	env.Archive.SetSync(func(string) error { return syscall.EIO })
	objs = []*archive.Object{spool(t, env.Archive, failing.Instances()[0].Bytes)}
	res := env.Archive.Store(context.Background(), objs, "")
	if !errors.Is(res[0].Err, syscall.EIO) {
		t.Errorf("store with a failing disk: err %v, want EIO", res[0].Err)
	}
	if ins, err := env.Archive.Instances(context.Background(), failing.StudyInstanceUID, "", ""); !errors.Is(err, archive.ErrNotFound) || len(ins) != 0 {
		t.Errorf("after a failed sync: %d instances indexed (err %v), want none", len(ins), err)
	}
	if _, err := os.Stat(objs[0].Path); err != nil {
		t.Errorf("spooled file not given back after a failed sync: %v", err)
	}
	if n := env.BlobCount(t); n != 3 {
		t.Errorf("%d blobs, want the 3 of the first request", n)
	}
}
