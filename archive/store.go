package archive

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5"
	"github.com/suyashkumar/dicom/pkg/tag"
	"gocloud.dev/blob"
	"golang.org/x/sync/errgroup"

	"github.com/priorflow/priorflow/archive/dicomheader"
	"github.com/priorflow/priorflow/archive/dicomjson"
	"github.com/priorflow/priorflow/archive/multipart"
)

// Result is the outcome of storing one object.
type Result struct {
	SOPClassUID    string
	SOPInstanceUID string
	StudyUID       string
	SeriesUID      string
	// Existed is true when the identical object was already stored
	// (re-sending is idempotent).
	Existed bool
	Err     error
}

// Store stores objects and indexes them. The objects are committed with
// their studies' ImagingStudy resources in one transaction; a study that
// fails fails alone and leaves no trace (its new blobs are removed).
// expectStudy, when set, is the StudyInstanceUID the request was addressed
// to.
func (a *Archive) Store(ctx context.Context, objs []*Object, expectStudy string) []Result {
	results := make([]Result, len(objs))
	groups := map[string][]int{}
	for i, o := range objs {
		r := &results[i]
		if o.Err != nil {
			r.Err = o.Err
			continue
		}
		h := o.Header
		r.SOPClassUID, r.SOPInstanceUID, r.StudyUID, r.SeriesUID = h.SOPClassUID, h.SOPInstanceUID, h.StudyInstanceUID, h.SeriesInstanceUID
		switch {
		case expectStudy != "" && h.StudyInstanceUID != expectStudy:
			r.Err = ErrStudyMismatch
		case h.PatientID == "":
			r.Err = ErrNoPatientID
		default:
			groups[h.StudyInstanceUID] = append(groups[h.StudyInstanceUID], i)
		}
	}
	studies := make([]string, 0, len(groups))
	for s := range groups {
		studies = append(studies, s)
	}
	sort.Strings(studies) // index takes its locks in this order
	// Every study's blobs are put, then synced together, before any index
	// commits: one round of fsyncs per request rather than one per study.
	puts := make([]studyPut, len(studies))
	all := map[string]*Object{}
	keys := map[string]bool{}
	for k, study := range studies {
		puts[k] = a.putStudy(ctx, objs, groups[study], results)
		maps.Copy(all, puts[k].uploaded)
		for _, i := range puts[k].pending {
			keys[blobKey(objs[i].Header, objs[i].SHA256)] = true
		}
	}
	if err := a.syncPut(ctx, keys); err != nil {
		for _, p := range puts {
			for _, i := range p.pending {
				results[i].Err = fmt.Errorf("store blob: %w", err)
			}
		}
		a.unput(all)
		return results
	}
	work := make([]*studyWork, 0, len(studies))
	for k, study := range studies {
		if len(puts[k].pending) > 0 {
			work = append(work, &studyWork{uid: study, studyPut: puts[k]})
		}
	}
	a.index(ctx, objs, work, results)
	return results
}

// studyPut is what putStudy did for one study: the blobs it added, and the
// objects left to index (including those whose blob already existed).
type studyPut struct {
	uploaded map[string]*Object
	pending  []int
}

// putStudy stores the blobs of the objects idx of one study. It runs before
// and outside the transaction: blobs are keyed by content, so a put never
// overwrites another object, and a failed transaction only has to remove
// what it added.
func (a *Archive) putStudy(ctx context.Context, objs []*Object, idx []int, results []Result) studyPut {
	uploaded := map[string]*Object{}
	var pending []int
	for _, i := range idx {
		o := objs[i]
		key := blobKey(o.Header, o.SHA256)
		exists, err := a.bucket.Exists(ctx, key)
		if err == nil && !exists {
			err = a.put(ctx, o, key)
			if err == nil {
				uploaded[key] = o
			}
		}
		if err != nil {
			results[i].Err = fmt.Errorf("store blob: %w", err)
			continue
		}
		pending = append(pending, i)
	}
	return studyPut{uploaded, pending}
}

// put stores a spooled object's bytes under key. With a file root on the
// spool's filesystem the spooled file itself is renamed into place: creating
// and filling a second file per object was a fifth of the ingest's CPU here.
func (a *Archive) put(ctx context.Context, o *Object, key string) error {
	if a.cfg.FileRoot != "" {
		dst := filepath.Join(a.cfg.FileRoot, filepath.FromSlash(key))
		err := os.MkdirAll(filepath.Dir(dst), 0o750)
		if err == nil {
			err = os.Rename(o.Path, dst)
		}
		if !errors.Is(err, syscall.EXDEV) {
			if err == nil {
				o.moved = dst
			}
			return err
		}
		// The spool is on another filesystem: copy.
	}
	return a.upload(ctx, o.Path, key)
}

// syncParallel bounds the concurrent fsyncs of one request. The kernel's
// journal commits concurrent fsyncs together, so a request's files become
// durable in about the time of one, not one after the other.
const syncParallel = 16

// syncPut makes the blobs of keys durable in the file root before the index
// commits them: without it an acknowledged instance could be an empty or
// missing file after a power loss. Blobs that existed before are synced too:
// a concurrent request may have put one and not synced it yet, and syncing a
// clean file costs next to nothing. Every directory between a file and the
// root is synced as well, for the new names. Buckets other than the file
// root (S3) are durable when their write returns.
func (a *Archive) syncPut(ctx context.Context, keys map[string]bool) error {
	if a.cfg.FileRoot == "" || len(keys) == 0 {
		return nil
	}
	var files []string
	dirs := map[string]bool{}
	for key := range keys {
		path := filepath.Join(a.cfg.FileRoot, filepath.FromSlash(key))
		files = append(files, path)
		for d := filepath.Dir(path); d != a.cfg.FileRoot && strings.HasPrefix(d, a.cfg.FileRoot); d = filepath.Dir(d) {
			dirs[d] = true
		}
	}
	dirs[a.cfg.FileRoot] = true
	// Files and directories together: their order does not matter, only
	// that all are durable before the commit that makes them reachable.
	g, _ := errgroup.WithContext(ctx)
	g.SetLimit(syncParallel)
	for _, f := range files {
		g.Go(func() error { return a.sync(f) })
	}
	for d := range dirs {
		g.Go(func() error { return a.sync(d) })
	}
	return g.Wait()
}

// syncPath flushes a file or directory to stable storage.
func syncPath(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync %s: %w", filepath.Base(path), err)
	}
	return nil
}

// unput takes back what put stored for a study that was not indexed: a
// renamed spool file goes back to the spool (a refused object is still
// needed there, e.g. for quarantine), a copy is deleted. A blob that the
// index references is left alone: a concurrent request storing the same
// object may have put the same key and committed.
func (a *Archive) unput(objs map[string]*Object) {
	if len(objs) == 0 {
		return
	}
	referenced, err := a.referencedBlobs(objs)
	if err != nil {
		// Keeping an unreferenced blob costs disk; removing a referenced
		// one loses an image.
		a.log.Warn("could not check blobs before removing them; kept", "blobs", len(objs), "err", err)
		return
	}
	var keys []string
	for key, o := range objs {
		if referenced[key] {
			continue
		}
		if o.moved != "" {
			if err := os.Rename(o.moved, o.Path); err == nil {
				o.moved = ""
				continue
			}
		}
		keys = append(keys, key)
	}
	a.removeBlobs(keys)
}

// referencedBlobs returns which of the objects' blob keys the index holds.
func (a *Archive) referencedBlobs(objs map[string]*Object) (map[string]bool, error) {
	sops := make([]string, 0, len(objs))
	for _, o := range objs {
		sops = append(sops, o.Header.SOPInstanceUID)
	}
	// A fresh context, as for removeBlobs: the request's may be what failed.
	rows, err := a.store.Pool().Query(context.Background(), `SELECT blob_key FROM dicom_instance WHERE sop_uid = ANY($1)`, sops)
	if err != nil {
		return nil, err
	}
	keys, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, k := range keys {
		if objs[k] != nil {
			out[k] = true
		}
	}
	return out, nil
}

// upload copies a spooled file into the bucket. Bucket.Upload hands the
// file itself to drivers that take a whole reader: the file bucket then
// copies file to file in the kernel (copy_file_range on Linux) instead of
// through a buffer, and the content type need not be sniffed.
func (a *Archive) upload(ctx context.Context, path, key string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return a.bucket.Upload(ctx, key, f, &blob.WriterOptions{ContentType: multipart.MediaTypeDICOM})
}

func (a *Archive) removeBlobs(keys []string) {
	for _, k := range keys {
		// A fresh context: this cleanup must happen even when the request's
		// context is what failed.
		if err := a.bucket.Delete(context.Background(), k); err != nil {
			a.log.Warn("could not remove blob", "key", k, "err", err)
		}
	}
}

// studyRow is the archive's record of a study, as the ImagingStudy is built
// from it.
type studyRow struct {
	patient, issuer                   string
	patientFHIR, isID                 string
	date, tm, tz, acc, desc, referrer string
}

// instanceMetadata is the DICOM JSON stored for /metadata.
func instanceMetadata(h *dicomheader.Header) ([]byte, error) {
	meta, err := dicomjson.Marshal(h.Dataset, dicomjson.Options{BulkDataURI: relativeBulkURI(h)})
	if err != nil {
		return nil, fmt.Errorf("index instance: metadata: %w", err)
	}
	if meta, err = withPixelDataURI(meta, h); err != nil {
		return nil, fmt.Errorf("index instance: metadata: %w", err)
	}
	return meta, nil
}

// withPixelDataURI adds the Pixel Data BulkDataURI to an image's metadata
// (PS3.18 F.2.6): the header the archive parses stops before Pixel Data, but
// clients discover the pixels through /metadata.
func withPixelDataURI(meta []byte, h *dicomheader.Header) ([]byte, error) {
	if h.Rows == 0 || h.Columns == 0 {
		return meta, nil
	}
	vr := "OW"
	if h.BitsAllocated <= 8 || !nativeSyntax(h.TransferSyntaxUID) {
		vr = "OB"
	}
	uri := relativeBulkURI(h)(dicomjson.Path{{Tag: tag.PixelData, Item: -1}})
	entry, err := json.Marshal(map[string]string{"vr": vr, "BulkDataURI": uri})
	if err != nil {
		return nil, err
	}
	// Pixel Data is the last tag of the header as parsed, so it is appended
	// to the object; decoding and re-encoding the whole metadata was a
	// twentieth of the ingest's CPU.
	last := true
	for _, e := range h.Dataset.Elements {
		if e.Tag.Group > tag.PixelData.Group || e.Tag.Group == tag.PixelData.Group && e.Tag.Element >= tag.PixelData.Element {
			last = false
			break
		}
	}
	if last && len(meta) >= 2 && meta[0] == '{' && meta[len(meta)-1] == '}' {
		out := append([]byte(nil), meta[:len(meta)-1]...)
		if len(meta) > 2 {
			out = append(out, ',')
		}
		out = append(out, `"7FE00010":`...)
		out = append(out, entry...)
		return append(out, '}'), nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(meta, &obj); err != nil {
		return nil, err
	}
	obj["7FE00010"] = entry
	return json.Marshal(obj) // encoding/json sorts keys: tags stay in order
}

// nativeSyntax reports an uncompressed transfer syntax (PS3.5 A.1-A.3).
func nativeSyntax(ts string) bool {
	switch ts {
	case "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99":
		return true
	}
	return false
}

func joinCharset(cs []string) string {
	out := ""
	for i, c := range cs {
		if i > 0 {
			out += `\`
		}
		out += c
	}
	return out
}

// positive is n, or NULL for an attribute absent (or not a count).
func positive(n int) *int {
	if n <= 0 {
		return nil
	}
	return &n
}
