package archive

import (
	"bytes"
	"context"
	"os"
	"testing"

	"gocloud.dev/blob/fileblob"

	"github.com/priorflow/priorflow/archive/dicomtest"
	"github.com/priorflow/priorflow/fhir"
	"github.com/priorflow/priorflow/fhir/postgres"
	"github.com/priorflow/priorflow/internal/database/dbtest"
)

// Two requests carrying the same object can both put its blob before
// either indexes it; when the second one's transaction fails, taking its
// blob back must not remove the one the first committed.
func TestUnput_KeepsBlobTheIndexReferences(t *testing.T) {
	t.Parallel()
	pool := dbtest.NewPool(t)
	codec, err := fhir.NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	reg, err := fhir.NewRegistry(fhir.ImagingStudy(), fhir.Patient(), fhir.Endpoint())
	if err != nil {
		t.Fatal(err)
	}
	store, err := postgres.New(pool, reg, codec, dbtest.Logger())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bucket, err := fileblob.OpenBucket(dir, &fileblob.Options{Metadata: fileblob.MetadataDontWrite})
	if err != nil {
		t.Fatal(err)
	}
	defer bucket.Close()
	a, err := New(store, bucket, dbtest.Logger(), Config{DICOMwebURL: "http://pf.example/dicomweb", SpoolDir: t.TempDir(), FileRoot: dir})
	if err != nil {
		t.Fatal(err)
	}
	st := dicomtest.NewStudy(t, dicomtest.WithInstancesPerSeries(2))
	ins := st.Instances()
	ctx := context.Background()
	spool := func(b []byte) *Object {
		o, err := a.Spool(bytes.NewReader(b))
		if err != nil || o.Err != nil {
			t.Fatal(err, o.Err)
		}
		t.Cleanup(o.Remove)
		return o
	}
	first := spool(ins[0].Bytes)
	if res := a.Store(ctx, []*Object{first}, ""); res[0].Err != nil {
		t.Fatal(res[0].Err)
	}
	// The losing request: the same object (key already indexed) and another
	// one of its own, put but never indexed.
	same, own := spool(ins[0].Bytes), spool(ins[1].Bytes)
	sameKey, ownKey := blobKey(same.Header, same.SHA256), blobKey(own.Header, own.SHA256)
	if err := a.put(ctx, own, ownKey); err != nil {
		t.Fatal(err)
	}
	a.unput(map[string]*Object{sameKey: same, ownKey: own})

	if ok, err := bucket.Exists(ctx, sameKey); err != nil || !ok {
		t.Errorf("the indexed blob is gone after another request took its copy back (exists %v, %v)", ok, err)
	}
	if ok, _ := bucket.Exists(ctx, ownKey); ok {
		t.Errorf("the request's own unindexed blob was not taken back")
	}
	if b, err := os.ReadFile(own.Path); err != nil || !bytes.Equal(b, ins[1].Bytes) {
		t.Errorf("the request's own object is not back in the spool: %v", err)
	}
}
