package archive

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	dpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/datatypes_go_proto"
	"github.com/jackc/pgx/v5"

	"github.com/priorflow/priorflow/fhir"
	"github.com/priorflow/priorflow/fhir/postgres"
	"github.com/priorflow/priorflow/internal/patientid"
)

// Code systems of the ImagingStudy index.
const (
	SystemDICOMUID = "urn:dicom:uid"                                 // StudyInstanceUID identifiers
	SystemDCM      = "http://dicom.nema.org/resources/ontology/DCM"  // modality codes (PS3.16)
	SystemSNOMED   = "http://snomed.info/sct"                        // body sites, laterality
	SystemRFC3986  = "urn:ietf:rfc:3986"                             // SOP Class UIDs as urn:oid
	SystemV20203   = "http://terminology.hl7.org/CodeSystem/v2-0203" // identifier type ACSN
	SystemEndpoint = "http://terminology.hl7.org/CodeSystem/endpoint-connection-type"
)

// StudyIdentifier is the token an ImagingStudy is found by for a
// StudyInstanceUID: identifier=urn:dicom:uid|urn:oid:<uid>.
func StudyIdentifier(uid string) fhir.Token {
	return fhir.Token{System: SystemDICOMUID, Code: "urn:oid:" + uid}
}

// PatientSystem maps IssuerOfPatientID and its qualifiers (the Universal
// Entity ID and its type) to an identifier system, by the rule HL7 v2 care
// events follow for the same assigning authority (patientid.ForIssuer).
func (a *Archive) PatientSystem(issuer, universalID, universalType string) string {
	if s := patientid.ForIssuer(issuer, universalID, universalType, a.cfg.IssuerSystems); s != "" {
		return s
	}
	return a.cfg.DefaultPatientIDSystem
}

// lockKey is the key conditional creates lock, the same as the FHIR REST
// layer's, so that the archive and API clients never both create.
func lockKey(typ, param string, tok fhir.Token) string {
	return typ + "?" + url.Values{param: {tok.System + "|" + tok.Code}}.Encode()
}

func (a *Archive) parse(v map[string]any) (protoMessage, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	res, _, err := a.codec().Parse(b)
	return res, err
}

// ensureEndpoint makes sure the Endpoint that points at this archive exists
// with the configured address.
func (a *Archive) ensureEndpoint(ctx context.Context, tx *postgres.Tx) error {
	// Checked at most once a minute: it was a read per study stored. An
	// Endpoint deleted through FHIR is thus recreated within a minute.
	if time.Since(time.Unix(0, a.endpointAt.Load())) < time.Minute {
		return nil
	}
	confirm := func() { a.endpointAt.Store(time.Now().UnixNano()) }
	cur, err := tx.Read(ctx, "Endpoint", LocalEndpointID)
	if err == nil && strings.Contains(string(cur.Body), `"address":"`+a.cfg.DICOMwebURL+`"`) {
		tx.AfterCommit(confirm)
		return nil
	}
	if err != nil && !fhir.IsKind(err, fhir.KindNotFound) && !fhir.IsKind(err, fhir.KindGone) {
		return err
	}
	ep := map[string]any{
		"resourceType":    "Endpoint",
		"id":              LocalEndpointID,
		"status":          "active",
		"name":            "Priorflow local archive (DICOMweb)",
		"connectionType":  map[string]any{"system": SystemEndpoint, "code": "dicom-wado-rs"},
		"payloadType":     []any{map[string]any{"text": "DICOM"}},
		"payloadMimeType": []any{"application/dicom"},
		"address":         a.cfg.DICOMwebURL,
	}
	res, err := a.parse(ep)
	if err != nil {
		return err
	}
	if _, _, err = tx.Put(ctx, res, 0); err != nil {
		return err
	}
	tx.AfterCommit(confirm)
	return nil
}

type seriesRow struct {
	uid, modality, description, bodyPart, laterality, date, time string
	number                                                       *int
	instances                                                    []instanceRow
}

type instanceRow struct {
	uid, sopClass string
	number        *int
}

// queueStudyRows queues the query of a study's series and instances, in
// the order the ImagingStudy lists them, to be read into *out.
func queueStudyRows(b *pgx.Batch, study string, out *[]*seriesRow) {
	b.Queue(`
		SELECT s.series_uid, s.modality, s.series_number, s.series_description, s.body_part, s.laterality, s.series_date, s.series_time,
		       i.sop_uid, i.sop_class_uid, i.instance_number
		FROM dicom_series s JOIN dicom_instance i ON i.series_uid = s.series_uid
		WHERE s.study_uid = $1
		ORDER BY s.series_number NULLS LAST, s.series_uid COLLATE "C", i.instance_number NULLS LAST, i.sop_uid COLLATE "C"`, study).
		Query(func(rows pgx.Rows) error {
			for rows.Next() {
				// Fresh targets per row: the series and instances keep them.
				var s seriesRow
				var in instanceRow
				if err := rows.Scan(&s.uid, &s.modality, &s.number, &s.description, &s.bodyPart, &s.laterality, &s.date, &s.time,
					&in.uid, &in.sopClass, &in.number); err != nil {
					return err
				}
				if n := len(*out); n == 0 || (*out)[n-1].uid != s.uid {
					*out = append(*out, &s)
				}
				last := (*out)[len(*out)-1]
				last.instances = append(last.instances, in)
			}
			return nil // the batch checks rows.Err
		})
}

// seriesRowsOf is what queueStudyRows reads for a study whose only rows are
// those the objects added inserted: the series as the first object of each
// describes it (the insert keeps the first), in the same order.
func seriesRowsOf(objs []*Object, added []int) []*seriesRow {
	var out []*seriesRow
	bySeries := map[string]*seriesRow{}
	for _, i := range added {
		h := objs[i].Header
		s := bySeries[h.SeriesInstanceUID]
		if s == nil {
			s = &seriesRow{uid: h.SeriesInstanceUID, modality: h.Modality, number: h.SeriesNumber, description: h.SeriesDescription,
				bodyPart: h.BodyPartExamined, laterality: h.Laterality, date: h.SeriesDate, time: h.SeriesTime}
			bySeries[s.uid] = s
			out = append(out, s)
		}
		s.instances = append(s.instances, instanceRow{uid: h.SOPInstanceUID, sopClass: h.SOPClassUID, number: h.InstanceNumber})
	}
	slices.SortFunc(out, func(a, b *seriesRow) int {
		return cmp.Or(compareNullsLast(a.number, b.number), strings.Compare(a.uid, b.uid))
	})
	for _, s := range out {
		slices.SortFunc(s.instances, func(a, b instanceRow) int {
			return cmp.Or(compareNullsLast(a.number, b.number), strings.Compare(a.uid, b.uid))
		})
	}
	return out
}

// compareNullsLast orders numbers as ORDER BY … NULLS LAST does.
func compareNullsLast(a, b *int) int {
	switch {
	case a == nil && b == nil:
		return 0
	case a == nil:
		return 1
	case b == nil:
		return -1
	}
	return cmp.Compare(*a, *b)
}

// reindex writes the ImagingStudy of a study as imagingStudy rebuilds it,
// once the local Endpoint it points at exists. fresh is an ImagingStudy
// created here, under an id just made up: created without first looking
// for a current version to replace.
func (a *Archive) reindex(ctx context.Context, tx *postgres.Tx, study string, st *studyRow, series []*seriesRow, current []byte, fresh bool) error {
	if err := a.ensureEndpoint(ctx, tx); err != nil {
		return err
	}
	is, err := a.imagingStudy(study, st, series, current)
	if err != nil {
		return err
	}
	if fresh {
		_, err = tx.CreateAs(ctx, is, st.isID)
		return err
	}
	_, _, err = tx.Put(ctx, is, 0)
	return err
}

// BodyPartExamined defined terms (PS3.16 Annex L) mapped to SNOMED CT.
var bodyParts = map[string][2]string{
	"ABDOMEN": {"818983003", "Abdomen"}, "ANKLE": {"70258002", "Ankle joint"}, "BRAIN": {"12738006", "Brain"},
	"BREAST": {"76752008", "Breast"}, "CHEST": {"51185008", "Thorax"}, "CSPINE": {"122494005", "Cervical spine"},
	"ELBOW": {"16953009", "Elbow joint"}, "EXTREMITY": {"66019005", "Limb"}, "FOOT": {"56459004", "Foot"},
	"HAND": {"85562004", "Hand"}, "HEAD": {"69536005", "Head"}, "HEART": {"80891009", "Heart"},
	"HIP": {"24136001", "Hip joint"}, "KNEE": {"72696002", "Knee"}, "LIVER": {"10200004", "Liver"},
	"LSPINE": {"122496007", "Lumbar spine"}, "NECK": {"45048000", "Neck"}, "PELVIS": {"12921003", "Pelvis"},
	"SHOULDER": {"16982005", "Shoulder"}, "SKULL": {"89546000", "Skull"}, "SPINE": {"421060004", "Spine"},
	"TSPINE": {"122495006", "Thoracic spine"}, "WHOLEBODY": {"38266002", "Entire body as a whole"},
	"WRIST": {"74670003", "Wrist joint"}, "KIDNEY": {"64033007", "Kidney"}, "PROSTATE": {"41216001", "Prostate"},
	"ABDOMENPELVIS": {"818982008", "Abdomen and Pelvis"}, "CHESTABDOMEN": {"416550000", "Chest and abdomen"},
}

func bodySite(part string) *dpb.Coding {
	p := strings.ToUpper(strings.TrimSpace(part))
	if p == "" {
		return nil
	}
	if c, ok := bodyParts[p]; ok {
		return coding(SystemSNOMED, c[0], c[1])
	}
	return &dpb.Coding{Display: fhirString(part)}
}

func laterality(l string) *dpb.Coding {
	switch strings.ToUpper(l) {
	case "L":
		return coding(SystemSNOMED, "7771000", "Left")
	case "R":
		return coding(SystemSNOMED, "24028007", "Right")
	}
	return nil
}

// StudyFHIRID returns the ImagingStudy id of a stored study.
func (a *Archive) StudyFHIRID(ctx context.Context, study string) (string, error) {
	var id string
	err := a.store.Pool().QueryRow(ctx, `SELECT imaging_study_id FROM dicom_study WHERE study_uid = $1`, study).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", ErrNotFound
	}
	if err != nil {
		return "", fmt.Errorf("study %s: %w", study, err)
	}
	return id, nil
}

// DeleteStudy removes a study: its ImagingStudy (FHIR delete, history kept),
// its index rows and, once that has committed, its blobs.
func (a *Archive) DeleteStudy(ctx context.Context, study string) error {
	id, err := a.StudyFHIRID(ctx, study)
	if err != nil {
		return err
	}
	return a.store.InTx(ctx, func(tx *postgres.Tx) error {
		_, err := tx.Delete(ctx, "ImagingStudy", id, 0)
		return err
	})
}

// onImagingStudyDelete removes the archive's part of a study when its
// ImagingStudy is deleted through FHIR or DICOMweb.
func (a *Archive) onImagingStudyDelete(ctx context.Context, tx *postgres.Tx, id string) error {
	db := tx.PgxTx()
	var study string
	err := db.QueryRow(ctx, `SELECT study_uid FROM dicom_study WHERE imaging_study_id = $1 FOR UPDATE`, id).Scan(&study)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil // an ImagingStudy of a remote study: nothing local
	}
	if err != nil {
		return fmt.Errorf("delete study: %w", err)
	}
	rows, err := db.Query(ctx, `SELECT blob_key FROM dicom_instance WHERE study_uid = $1`, study)
	if err != nil {
		return fmt.Errorf("delete study: %w", err)
	}
	keys, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("delete study: %w", err)
	}
	if _, err := db.Exec(ctx, `DELETE FROM dicom_study WHERE study_uid = $1`, study); err != nil {
		return fmt.Errorf("delete study: %w", err)
	}
	tx.AfterCommit(func() { a.removeBlobs(keys) })
	return nil
}
