package archive_test

import (
	"bytes"
	"context"
	"os"
	"testing"

	"github.com/priorflow/priorflow/archive"
	"github.com/priorflow/priorflow/archive/archivetest"
	"github.com/priorflow/priorflow/archive/dicomtest"
)

// Two requests carrying the same object can both put its blob before
// either indexes it; when the second one's transaction fails, taking its
// blob back must not remove the one the first committed.
func TestUnput_KeepsBlobTheIndexReferences(t *testing.T) {
	t.Parallel()
	env := archivetest.New(t, "http://pf.example/dicomweb")
	a := env.Archive
	st := dicomtest.NewStudy(t, dicomtest.WithInstancesPerSeries(2))
	ins := st.Instances()
	ctx := context.Background()
	first := spool(t, a, ins[0].Bytes)
	if res := a.Store(ctx, []*archive.Object{first}, ""); res[0].Err != nil {
		t.Fatal(res[0].Err)
	}
	// The losing request: the same object (key already indexed) and another
	// one of its own, put but never indexed.
	same, own := spool(t, a, ins[0].Bytes), spool(t, a, ins[1].Bytes)
	if err := a.Put(ctx, own); err != nil {
		t.Fatal(err)
	}
	a.Unput(same, own)

	if ok, err := env.Bucket.Exists(ctx, archive.BlobKeyOf(same)); err != nil || !ok {
		t.Errorf("the indexed blob is gone after another request took its copy back (exists %v, %v)", ok, err)
	}
	if ok, _ := env.Bucket.Exists(ctx, archive.BlobKeyOf(own)); ok {
		t.Errorf("the request's own unindexed blob was not taken back")
	}
	if b, err := os.ReadFile(own.Path); err != nil || !bytes.Equal(b, ins[1].Bytes) {
		t.Errorf("the request's own object is not back in the spool: %v", err)
	}
}
