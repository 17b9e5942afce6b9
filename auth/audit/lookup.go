package audit

import (
	"context"
	"fmt"

	"github.com/priorflow/priorflow/fhir/postgres"
)

// StudyPatients returns the patients (Patient/x) of studies by
// StudyInstanceUID; a study whose patient is not known is left out.
type StudyPatients func(ctx context.Context, studyUIDs []string) (map[string]string, error)

// StudyPatientLookup returns a lookup for Recorder.DICOMweb: the patient of
// a study is the subject of its ImagingStudy, found by the identifier the
// archive indexes it under (identifier=urn:dicom:uid|urn:oid:<uid>), as the
// search index holds it (ImagingStudy's patient parameter): the bodies of
// a QIDO-RS response's studies can be megabytes. A study that is not
// indexed, or whose ImagingStudy has no Patient subject, has none. Without
// ImagingStudy in the registry no study has one. All the studies of an
// event are looked up in one statement: a STOW-RS request names several, a
// QIDO-RS response up to a thousand.
func StudyPatientLookup(store *postgres.Store) StudyPatients {
	return func(ctx context.Context, uids []string) (map[string]string, error) {
		out := map[string]string{}
		rt := store.Registry().Type("ImagingStudy")
		if rt == nil || rt.Param("identifier") == nil || rt.Param("patient") == nil {
			return out, nil
		}
		codes := make([]string, 0, len(uids))
		for _, uid := range uids {
			if validUID(uid) {
				codes = append(codes, "urn:oid:"+uid)
			}
		}
		found, err := store.TokenReferences(ctx, "ImagingStudy", "identifier", SystemDICOMUID, codes, "patient")
		if err != nil {
			return nil, fmt.Errorf("look up the patients of studies: %w", err)
		}
		for code, refs := range found {
			for _, r := range refs {
				p := r.URL
				if r.URL == "" && r.Type == "Patient" {
					p = "Patient/" + r.ID
				}
				if p = patientRef(p); p != "" {
					out[code[len("urn:oid:"):]] = p
					break
				}
			}
		}
		return out, nil
	}
}
