package archive

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/priorflow/priorflow/archive/dicomheader"
	"github.com/priorflow/priorflow/fhir"
	"github.com/priorflow/priorflow/fhir/postgres"
)

// studyWork is one study of a request on its way into the index: the
// objects left to index once its blobs are in place.
type studyWork struct {
	uid string
	studyPut
}

// studyError fails one study of a request.
type studyError struct {
	study string
	err   error
}

func (e *studyError) Error() string { return e.err.Error() }
func (e *studyError) Unwrap() error { return e.err }

// index indexes the objects of a request's studies in one transaction: one
// commit, and so one WAL flush, per request instead of one per study. A
// request of five two-instance studies waited mostly on those flushes.
//
// A study that fails (another patient's study, a series of another study, a
// resource R4 refuses) rolls the transaction back, and the other studies
// are indexed again without it: it fails alone and leaves no trace, as it
// did with a transaction of its own. Savepoints would save the second
// round, but the FHIR store's transaction buffers index rows and after-
// commit work in memory, which a ROLLBACK TO would not undo.
func (a *Archive) index(ctx context.Context, objs []*Object, work []*studyWork, results []Result) {
	base := slices.Clone(results)
	failed := map[string]error{}
	retried := false
	for {
		copy(results, base)
		active := slices.DeleteFunc(slices.Clone(work), func(w *studyWork) bool { return failed[w.uid] != nil })
		if len(active) == 0 {
			break
		}
		err := a.store.InTx(ctx, func(tx *postgres.Tx) error {
			return a.indexStudies(ctx, tx, objs, active, results)
		})
		var se *studyError
		switch {
		case err == nil:
		case isDeadlock(err) && !retried:
			// Archive requests take their locks in one order and never
			// deadlock each other; a FHIR transaction Bundle that takes
			// conditional locks in another order can. Once more.
			retried = true
			continue
		case errors.As(err, &se) && ctx.Err() == nil && failed[se.study] == nil:
			failed[se.study] = se.err
			continue
		default:
			for _, w := range active {
				failed[w.uid] = err
			}
		}
		break
	}
	stale := map[string]*Object{}
	for _, w := range work {
		for _, i := range w.pending {
			r := &results[i]
			if err := failed[w.uid]; err != nil && r.Err == nil {
				r.Err = err
			}
			if r.Err != nil {
				// Refused objects give back the blobs this request added.
				if key := blobKey(objs[i].Header, objs[i].SHA256); w.uploaded[key] != nil {
					stale[key] = objs[i]
				}
			}
		}
	}
	a.unput(stale)
}

func isDeadlock(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "40P01"
}

// lookups is what one round trip at the start of a request's transaction
// reads for all of its studies.
type lookups struct {
	studies  map[string]*studyRow // stored studies by StudyInstanceUID
	stored   map[string]string    // SOP Instance UID → sha256, stored or earlier in this request
	patients map[fhir.Token][]string
	// imagingStudies are the ImagingStudy resources that already carry the
	// identifier of a study not stored yet (the network search lists
	// remote studies before their images arrive).
	imagingStudies map[string][]existingStudy
	// created are the Patients this transaction created.
	created map[fhir.Token]string
}

type existingStudy struct {
	id   string
	body []byte
}

// indexStudies writes the instance rows of the studies of work and their
// ImagingStudy resources, all inside tx.
//
// Every lock comes first, in one order for all requests: the studies, then
// the Patient identifiers, then the ImagingStudy identifiers, each sorted.
// Requests whose studies or patients overlap then wait for each other but
// cannot deadlock. The study lock serializes concurrent STOWs of one study
// so that they end with exact counts; the identifier locks are the keys the
// FHIR API's conditional creates take, so neither side creates a second
// Patient or ImagingStudy beside the other's.
func (a *Archive) indexStudies(ctx context.Context, tx *postgres.Tx, objs []*Object, work []*studyWork, results []Result) error {
	var uids, sops []string
	patientLocks := map[string]bool{}
	// The patient lookup's rows: each study not stored yet with each
	// patient its objects name (the first object added decides).
	var pStudy, pSystem, pCode []string
	for _, w := range work {
		uids = append(uids, w.uid)
		seen := map[fhir.Token]bool{}
		for _, i := range w.pending {
			h := objs[i].Header
			sops = append(sops, h.SOPInstanceUID)
			tok := a.patientToken(h)
			if !seen[tok] {
				seen[tok] = true
				patientLocks[lockKey("Patient", "identifier", tok)] = true
				pStudy, pSystem, pCode = append(pStudy, w.uid), append(pSystem, tok.System), append(pCode, tok.Code)
			}
		}
	}
	isLocks := make([]string, len(uids))
	for k, uid := range uids {
		isLocks[k] = lockKey("ImagingStudy", "identifier", StudyIdentifier(uid))
	}
	slices.Sort(isLocks)

	b := &pgx.Batch{}
	for _, uid := range uids { // sorted by Store
		tx.QueueLock(b, "dicom-study:"+uid)
	}
	for _, k := range slices.Sorted(maps.Keys(patientLocks)) {
		tx.QueueLock(b, k)
	}
	for _, k := range isLocks {
		tx.QueueLock(b, k)
	}
	l := &lookups{studies: map[string]*studyRow{}, stored: map[string]string{}, patients: map[fhir.Token][]string{},
		imagingStudies: map[string][]existingStudy{}, created: map[fhir.Token]string{}}
	b.Queue(`SELECT study_uid, patient_id, issuer, patient_fhir_id, imaging_study_id, study_date, study_time, timezone_offset,
			accession_number, study_description, referring_physician
		FROM dicom_study WHERE study_uid = ANY($1)`, uids).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var uid string
			var r studyRow
			if err := rows.Scan(&uid, &r.patient, &r.issuer, &r.patientFHIR, &r.isID, &r.date, &r.tm, &r.tz, &r.acc, &r.desc, &r.referrer); err != nil {
				return err
			}
			l.studies[uid] = &r
		}
		return nil
	})
	b.Queue(`SELECT sop_uid, sha256 FROM dicom_instance WHERE sop_uid = ANY($1)`, sops).Query(func(rows pgx.Rows) error {
		var sop, sha string
		_, err := pgx.ForEachRow(rows, []any{&sop, &sha}, func() error {
			l.stored[sop] = sha
			return nil
		})
		return err
	})
	// The two identifier lookups match as the FHIR searches
	// identifier=system|code do, for the studies not stored yet only. They
	// are planned for their values each time, as searches are (customPlan
	// in fhir/postgres): a generic plan made while the tables were small
	// kept scanning them whole once they were not. A batch cannot choose
	// that per statement, so the setting goes around the two.
	b.Queue(`SET LOCAL plan_cache_mode = force_custom_plan`)
	b.Queue(`
		SELECT k.system, k.code, r.id
		FROM unnest($1::text[], $2::text[], $3::text[]) AS k(study, system, code)
		JOIN idx_token t ON t.type = 'Patient' AND t.param = 'identifier' AND t.code = k.code AND t.system = k.system
		JOIN resource r ON r.rid = t.rid AND r.type = 'Patient' AND NOT r.deleted
		WHERE NOT EXISTS (SELECT 1 FROM dicom_study d WHERE d.study_uid = k.study)`, pStudy, pSystem, pCode).
		Query(func(rows pgx.Rows) error {
			var tok fhir.Token
			var id string
			_, err := pgx.ForEachRow(rows, []any{&tok.System, &tok.Code, &id}, func() error {
				if !slices.Contains(l.patients[tok], id) {
					l.patients[tok] = append(l.patients[tok], id)
				}
				return nil
			})
			return err
		})
	b.Queue(`
		SELECT k.study, r.id, r.body
		FROM unnest($1::text[]) AS k(study)
		JOIN idx_token t ON t.type = 'ImagingStudy' AND t.param = 'identifier' AND t.code = 'urn:oid:' || k.study AND t.system = $2
		JOIN resource r ON r.rid = t.rid AND r.type = 'ImagingStudy' AND NOT r.deleted
		WHERE NOT EXISTS (SELECT 1 FROM dicom_study d WHERE d.study_uid = k.study)`, uids, SystemDICOMUID).
		Query(func(rows pgx.Rows) error {
			var uid, id, body string
			_, err := pgx.ForEachRow(rows, []any{&uid, &id, &body}, func() error {
				if !slices.ContainsFunc(l.imagingStudies[uid], func(e existingStudy) bool { return e.id == id }) {
					l.imagingStudies[uid] = append(l.imagingStudies[uid], existingStudy{id, []byte(body)})
				}
				return nil
			})
			return err
		})
	b.Queue(`SET LOCAL plan_cache_mode TO DEFAULT`)
	if err := tx.PgxTx().SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("index: %w", err)
	}
	for _, w := range work {
		if err := a.indexStudy(ctx, tx, objs, w, l, results); err != nil {
			return &studyError{w.uid, err}
		}
	}
	return nil
}

// patientToken is the identifier of the Patient an object is filed under.
func (a *Archive) patientToken(h *dicomheader.Header) fhir.Token {
	return fhir.Token{System: a.PatientSystem(h.IssuerOfPatientID, h.IssuerUniversalID, h.IssuerUniversalIDType), Code: h.PatientID}
}

// indexStudy writes the instance rows of one study and rebuilds its
// ImagingStudy. Statements go in one batch: on this kind of machine a round
// trip to PostgreSQL costs more CPU than most statements themselves.
func (a *Archive) indexStudy(ctx context.Context, tx *postgres.Tx, objs []*Object, w *studyWork, l *lookups, results []Result) error {
	study := w.uid
	st := l.studies[study]
	var added []int
	var create *dicomheader.Header // the object a new study is recorded from
	var current []byte             // the ImagingStudy of a study not stored yet
	for _, i := range w.pending {
		h, r := objs[i].Header, &results[i]
		if st != nil && (h.PatientID != st.patient || h.IssuerOfPatientID != st.issuer) {
			r.Err = ErrPatientMismatch
			continue
		}
		if sha, ok := l.stored[h.SOPInstanceUID]; ok {
			if sha == objs[i].SHA256 {
				r.Existed = true
			} else {
				r.Err = ErrConflict
			}
			continue
		}
		if st == nil {
			var err error
			if st, current, err = a.newStudy(ctx, tx, h, l); err != nil {
				return err
			}
			create = h
		}
		l.stored[h.SOPInstanceUID] = objs[i].SHA256
		added = append(added, i)
	}
	if len(added) == 0 {
		return nil
	}

	b := &pgx.Batch{}
	if h := create; h != nil {
		b.Queue(`
			INSERT INTO dicom_study (study_uid, patient_id, issuer, patient_name, patient_name_norm, patient_birth_date, patient_sex,
				study_date, study_time, timezone_offset, accession_number, study_id, study_description,
				referring_physician, referring_norm, specific_charset, imaging_study_id, patient_fhir_id)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)`,
			h.StudyInstanceUID, h.PatientID, h.IssuerOfPatientID, h.PatientName.Raw, fhir.NormalizeString(h.PatientName.Raw),
			h.PatientBirthDate, h.PatientSex, h.StudyDate, h.StudyTime, h.TimezoneOffsetFromUTC, h.AccessionNumber, h.StudyID,
			h.StudyDescription, h.ReferringPhysicianName.Raw, fhir.NormalizeString(h.ReferringPhysicianName.Raw),
			joinCharset(h.SpecificCharacterSet), st.isID, st.patientFHIR)
	}
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
	if create != nil {
		// A study new to the archive holds only what this request adds: its
		// rows are the headers just inserted, not read back.
		rows = seriesRowsOf(objs, added)
	} else {
		queueStudyRows(b, study, &rows)
		b.Queue(`SELECT body FROM resource WHERE type = 'ImagingStudy' AND id = $1 AND NOT deleted`, st.isID).
			QueryRow(func(row pgx.Row) error {
				if err := row.Scan(&current); !errors.Is(err, pgx.ErrNoRows) {
					return err
				}
				return nil
			})
	}
	if err := tx.PgxTx().SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("index instances: %w", err)
	}
	if foreign != "" {
		return fmt.Errorf("%w: series %s belongs to another study", ErrInvalidObject, foreign)
	}
	return a.reindex(ctx, tx, study, st, rows, current, create != nil && current == nil)
}

// newStudy records a study that is not stored yet under the Patient its
// first object names, found or created, and the ImagingStudy that already
// describes it, if any (with its current body). Several Patients with the
// object's identifier are refused, as is an ImagingStudy of another
// patient: choosing one could file images under the wrong person.
func (a *Archive) newStudy(ctx context.Context, tx *postgres.Tx, h *dicomheader.Header, l *lookups) (*studyRow, []byte, error) {
	tok := a.patientToken(h)
	patientID := l.created[tok]
	if patientID == "" {
		switch ids := l.patients[tok]; len(ids) {
		case 1:
			patientID = ids[0]
		case 0:
			p, err := a.patient(h, tok)
			if err != nil {
				return nil, nil, err
			}
			out, err := tx.Create(ctx, p)
			if err != nil {
				return nil, nil, fmt.Errorf("create patient: %w", err)
			}
			patientID = out.ID
			l.created[tok] = patientID
		default:
			// The identifier value stays out of the error: errors reach logs.
			return nil, nil, fmt.Errorf("%w: several Patient resources (%s and %s) carry the object's PatientID in system %s",
				ErrPatientMismatch, ids[0], ids[1], tok.System)
		}
	}
	st := &studyRow{patient: h.PatientID, issuer: h.IssuerOfPatientID, patientFHIR: patientID,
		date: h.StudyDate, tm: h.StudyTime, tz: h.TimezoneOffsetFromUTC, acc: h.AccessionNumber,
		desc: h.StudyDescription, referrer: h.ReferringPhysicianName.Raw}
	var current []byte
	switch found := l.imagingStudies[h.StudyInstanceUID]; len(found) {
	case 0:
		st.isID = uuid.NewString()
	case 1:
		var is struct {
			Subject struct {
				Reference string `json:"reference"`
			} `json:"subject"`
		}
		if err := json.Unmarshal(found[0].body, &is); err != nil {
			return nil, nil, fmt.Errorf("existing ImagingStudy: %w", err)
		}
		// Written by an EHR app, the subject may be this server's
		// absolute URL for the same Patient (fhir.Ref.Local).
		subject := is.Subject.Reference
		if rest, under := fhir.UnderBase(subject, a.store.BaseURL()); under {
			subject = rest
		}
		if subject != "Patient/"+patientID {
			return nil, nil, fmt.Errorf("%w: ImagingStudy/%s names %s", ErrPatientMismatch, found[0].id, is.Subject.Reference)
		}
		st.isID, current = found[0].id, found[0].body
	default:
		return nil, nil, fmt.Errorf("%w: several ImagingStudy resources carry StudyInstanceUID %s", ErrPatientMismatch, h.StudyInstanceUID)
	}
	return st, current, nil
}
