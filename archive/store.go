package archive

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
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
	"github.com/priorflow/priorflow/fhir"
	"github.com/priorflow/priorflow/fhir/postgres"
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

// Store stores objects and indexes them. Objects of one study are committed
// together with that study's ImagingStudy in one transaction; a study whose
// transaction fails leaves no trace (its new blobs are removed). expectStudy,
// when set, is the StudyInstanceUID the request was addressed to.
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
	sort.Strings(studies) // a fixed lock order across concurrent requests
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
	for k, study := range studies {
		a.indexStudy(ctx, study, objs, puts[k], results)
	}
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

// indexStudy indexes the objects put for one study in one transaction. A
// transaction per study, not per request: transactions spanning several
// studies would take study, patient and ImagingStudy locks in an order that
// concurrent requests can interleave into deadlocks.
func (a *Archive) indexStudy(ctx context.Context, study string, objs []*Object, put studyPut, results []Result) {
	uploaded, pending := put.uploaded, put.pending
	if len(pending) == 0 {
		return
	}
	err := a.store.InTx(ctx, func(tx *postgres.Tx) error {
		return a.indexObjects(ctx, tx, study, objs, pending, results)
	})
	if err != nil {
		for _, i := range pending {
			if results[i].Err == nil {
				results[i].Err = err
			}
		}
		a.unput(uploaded)
		return
	}
	// Objects refused inside the transaction (conflicts) leave their blob.
	stale := map[string]*Object{}
	for _, i := range pending {
		if results[i].Err != nil {
			if key := blobKey(objs[i].Header, objs[i].SHA256); uploaded[key] != nil {
				stale[key] = objs[i]
			}
		}
	}
	a.unput(stale)
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

// indexObjects writes the instance rows of one study and rebuilds its
// ImagingStudy, all inside tx. The study is locked first so that concurrent
// STOWs of one study serialize and end with exact counts. Statements go in
// batches: on this kind of machine a round trip to PostgreSQL costs more CPU
// than most statements themselves.
func (a *Archive) indexObjects(ctx context.Context, tx *postgres.Tx, study string, objs []*Object, idx []int, results []Result) error {
	db := tx.PgxTx()
	sops := make([]string, len(idx))
	for k, i := range idx {
		sops[k] = objs[i].Header.SOPInstanceUID
	}
	var st *studyRow
	stored := map[string]string{} // SOP Instance UID → sha256, stored or earlier in this request
	b := &pgx.Batch{}
	tx.QueueLock(b, "dicom-study:"+study)
	b.Queue(`SELECT patient_id, issuer, patient_fhir_id, imaging_study_id, study_date, study_time, timezone_offset,
			accession_number, study_description, referring_physician
		FROM dicom_study WHERE study_uid = $1`, study).QueryRow(func(row pgx.Row) error {
		var r studyRow
		err := row.Scan(&r.patient, &r.issuer, &r.patientFHIR, &r.isID, &r.date, &r.tm, &r.tz, &r.acc, &r.desc, &r.referrer)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		st = &r
		return err
	})
	b.Queue(`SELECT sop_uid, sha256 FROM dicom_instance WHERE sop_uid = ANY($1)`, sops).Query(func(rows pgx.Rows) error {
		var sop, sha string
		_, err := pgx.ForEachRow(rows, []any{&sop, &sha}, func() error {
			stored[sop] = sha
			return nil
		})
		return err
	})
	if err := db.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("index study: %w", err)
	}
	var added []int
	for _, i := range idx {
		h, r := objs[i].Header, &results[i]
		if st != nil && (h.PatientID != st.patient || h.IssuerOfPatientID != st.issuer) {
			r.Err = ErrPatientMismatch
			continue
		}
		if sha, ok := stored[h.SOPInstanceUID]; ok {
			if sha == objs[i].SHA256 {
				r.Existed = true
			} else {
				r.Err = ErrConflict
			}
			continue
		}
		if st == nil {
			var err error
			if st, err = a.insertStudy(ctx, tx, h); err != nil {
				return err
			}
		}
		stored[h.SOPInstanceUID] = objs[i].SHA256
		added = append(added, i)
	}
	if len(added) == 0 {
		return nil
	}

	b = &pgx.Batch{}
	var series []string
	for _, i := range added {
		h := objs[i].Header
		if slices.Contains(series, h.SeriesInstanceUID) {
			continue
		}
		series = append(series, h.SeriesInstanceUID)
		b.Queue(`
			INSERT INTO dicom_series (series_uid, study_uid, modality, series_number, series_description, body_part, laterality, series_date, series_time)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
			ON CONFLICT (series_uid) DO NOTHING`,
			h.SeriesInstanceUID, h.StudyInstanceUID, h.Modality, h.SeriesNumber, h.SeriesDescription, h.BodyPartExamined,
			h.Laterality, h.SeriesDate, h.SeriesTime)
	}
	var foreign string
	b.Queue(`SELECT series_uid FROM dicom_series WHERE series_uid = ANY($1) AND study_uid <> $2 LIMIT 1`, series, study).
		QueryRow(func(row pgx.Row) error {
			if err := row.Scan(&foreign); !errors.Is(err, pgx.ErrNoRows) {
				return err
			}
			return nil
		})
	for _, i := range added {
		o := objs[i]
		h := o.Header
		meta, err := instanceMetadata(h)
		if err != nil {
			return err
		}
		b.Queue(`
			INSERT INTO dicom_instance (sop_uid, series_uid, study_uid, sop_class_uid, transfer_syntax, instance_number,
				number_of_frames, size, sha256, blob_key, metadata, rows, columns)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
			h.SOPInstanceUID, h.SeriesInstanceUID, h.StudyInstanceUID, h.SOPClassUID, h.TransferSyntaxUID, h.InstanceNumber,
			h.NumberOfFrames, o.Size, o.SHA256, blobKey(h, o.SHA256), string(meta), positive(h.Rows), positive(h.Columns))
	}
	var rows []*seriesRow
	queueStudyRows(b, study, &rows)
	var current []byte
	b.Queue(`SELECT body FROM resource WHERE type = 'ImagingStudy' AND id = $1 AND NOT deleted`, st.isID).
		QueryRow(func(row pgx.Row) error {
			if err := row.Scan(&current); !errors.Is(err, pgx.ErrNoRows) {
				return err
			}
			return nil
		})
	if err := db.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("index instances: %w", err)
	}
	if foreign != "" {
		return fmt.Errorf("%w: series %s belongs to another study", ErrInvalidObject, foreign)
	}
	return a.reindex(ctx, tx, study, st, rows, current)
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

func (a *Archive) insertStudy(ctx context.Context, tx *postgres.Tx, h *dicomheader.Header) (*studyRow, error) {
	patientID, err := a.findOrCreatePatient(ctx, tx, h)
	if err != nil {
		return nil, err
	}
	isID, err := a.existingImagingStudy(ctx, tx, h.StudyInstanceUID, patientID)
	if err != nil {
		return nil, err
	}
	st := &studyRow{patient: h.PatientID, issuer: h.IssuerOfPatientID, patientFHIR: patientID,
		date: h.StudyDate, tm: h.StudyTime, tz: h.TimezoneOffsetFromUTC, acc: h.AccessionNumber,
		desc: h.StudyDescription, referrer: h.ReferringPhysicianName.Raw}
	err = tx.PgxTx().QueryRow(ctx, `
		INSERT INTO dicom_study (study_uid, patient_id, issuer, patient_name, patient_name_norm, patient_birth_date, patient_sex,
			study_date, study_time, timezone_offset, accession_number, study_id, study_description,
			referring_physician, referring_norm, specific_charset, imaging_study_id, patient_fhir_id)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, COALESCE($18, gen_random_uuid()::text), $17)
		RETURNING imaging_study_id`,
		h.StudyInstanceUID, h.PatientID, h.IssuerOfPatientID, h.PatientName.Raw, fhir.NormalizeString(h.PatientName.Raw),
		h.PatientBirthDate, h.PatientSex, h.StudyDate, h.StudyTime, h.TimezoneOffsetFromUTC, h.AccessionNumber, h.StudyID,
		h.StudyDescription, h.ReferringPhysicianName.Raw, fhir.NormalizeString(h.ReferringPhysicianName.Raw),
		joinCharset(h.SpecificCharacterSet), patientID, isID).Scan(&st.isID)
	if err != nil {
		return nil, fmt.Errorf("index study: %w", err)
	}
	return st, nil
}

// existingImagingStudy finds an ImagingStudy already describing the study
// (one the network search listed before its images arrived) so the archive
// completes it rather than creating a second one. It must name the same
// patient.
func (a *Archive) existingImagingStudy(ctx context.Context, tx *postgres.Tx, study, patientID string) (*string, error) {
	tok := StudyIdentifier(study)
	if err := tx.Lock(ctx, lockKey("ImagingStudy", "identifier", tok)); err != nil {
		return nil, err
	}
	res, err := tx.Search(ctx, a.tokenQuery("ImagingStudy", "identifier", tok))
	if err != nil {
		return nil, err
	}
	switch len(res.Matches) {
	case 0:
		return nil, nil
	case 1:
		var is struct {
			Subject struct {
				Reference string `json:"reference"`
			} `json:"subject"`
		}
		if err := json.Unmarshal(res.Matches[0].Body, &is); err != nil {
			return nil, fmt.Errorf("existing ImagingStudy: %w", err)
		}
		if is.Subject.Reference != "Patient/"+patientID {
			return nil, fmt.Errorf("%w: ImagingStudy/%s names %s", ErrPatientMismatch, res.Matches[0].ID, is.Subject.Reference)
		}
		return &res.Matches[0].ID, nil
	}
	return nil, fmt.Errorf("%w: several ImagingStudy resources carry StudyInstanceUID %s", ErrPatientMismatch, study)
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
