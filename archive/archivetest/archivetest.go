// Package archivetest wires an archive on its own database and blob
// directory for tests.
package archivetest

import (
	"context"
	"testing"

	"gocloud.dev/blob"
	"gocloud.dev/blob/fileblob"

	"github.com/priorflow/priorflow/archive"
	"github.com/priorflow/priorflow/fhir"
	"github.com/priorflow/priorflow/fhir/postgres"
	"github.com/priorflow/priorflow/internal/database/dbtest"
)

// Env is an archive and the FHIR store it indexes into.
type Env struct {
	Archive *archive.Archive
	Store   *postgres.Store
	Bucket  *blob.Bucket
	BlobDir string
}

// Registry returns the resource types the archive needs.
func Registry(tb testing.TB) *fhir.Registry {
	tb.Helper()
	reg, err := fhir.NewRegistry(fhir.ImagingStudy(), fhir.Patient(), fhir.Endpoint())
	if err != nil {
		tb.Fatal(err)
	}
	return reg
}

// New returns an archive on a fresh database and blob directory.
func New(tb testing.TB, dicomwebURL string) *Env {
	tb.Helper()
	pool := dbtest.NewPool(tb)
	codec, err := fhir.NewCodec()
	if err != nil {
		tb.Fatal(err)
	}
	store, err := postgres.New(pool, Registry(tb), codec, dbtest.Logger())
	if err != nil {
		tb.Fatal(err)
	}
	dir := tb.TempDir()
	bucket, err := fileblob.OpenBucket(dir, &fileblob.Options{Metadata: fileblob.MetadataDontWrite})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { bucket.Close() })
	a, err := archive.New(store, bucket, dbtest.Logger(), archive.Config{DICOMwebURL: dicomwebURL, SpoolDir: tb.TempDir(), FileRoot: dir})
	if err != nil {
		tb.Fatal(err)
	}
	return &Env{Archive: a, Store: store, Bucket: bucket, BlobDir: dir}
}

// BlobCount counts the stored blobs.
func (e *Env) BlobCount(tb testing.TB) int {
	tb.Helper()
	n := 0
	it := e.Bucket.List(nil)
	for {
		obj, err := it.Next(context.Background())
		if err != nil {
			break
		}
		if !obj.IsDir {
			n++
		}
	}
	return n
}
