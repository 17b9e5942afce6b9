package archive

import "context"

// BlobKeyOf, Put and Unput expose the blob steps of Store to the external
// tests, which wire archives with archivetest (an import cycle from here).
func BlobKeyOf(o *Object) string { return blobKey(o.Header, o.SHA256) }

func (a *Archive) Put(ctx context.Context, o *Object) error { return a.put(ctx, o, BlobKeyOf(o)) }

func (a *Archive) Unput(objs ...*Object) {
	m := map[string]*Object{}
	for _, o := range objs {
		m[BlobKeyOf(o)] = o
	}
	a.unput(m)
}

// SetSync replaces the archive's fsync, for tests that provoke a failing
// disk or watch what is made durable.
func (a *Archive) SetSync(fn func(path string) error) { a.sync = fn }
