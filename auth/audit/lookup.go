package audit

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/priorflow/priorflow/fhir"
	"github.com/priorflow/priorflow/fhir/postgres"
	"github.com/priorflow/priorflow/fhir/search"
)

// StudyPatientLookup returns a lookup for Recorder.DICOMweb: the patient of
// a study is the subject of its ImagingStudy, found by the identifier the
// archive indexes it under (identifier=urn:dicom:uid|urn:oid:<uid>). A study
// that is not indexed, or whose ImagingStudy has no Patient subject, has
// none (""). Without ImagingStudy in the registry every study has none.
func StudyPatientLookup(store *postgres.Store) func(ctx context.Context, studyUID string) (string, error) {
	return func(ctx context.Context, uid string) (string, error) {
		rt := store.Registry().Type("ImagingStudy")
		if rt == nil || rt.Param("identifier") == nil || !validUID(uid) {
			return "", nil
		}
		res, err := store.Search(ctx, &search.Query{Type: rt, Count: 2, Total: "none", Clauses: []search.Clause{{
			Param:  rt.Param("identifier"),
			Values: []search.Value{{Token: fhir.Token{System: SystemDICOMUID, Code: "urn:oid:" + uid}, SystemSet: true}},
		}}})
		if err != nil {
			return "", fmt.Errorf("look up the ImagingStudy of a study: %w", err)
		}
		for _, m := range res.Matches {
			var is struct {
				Subject *ref `json:"subject"`
			}
			if json.Unmarshal(m.Body, &is) == nil && is.Subject != nil {
				if p := patientRef(is.Subject.Reference); p != "" {
					return p, nil
				}
			}
		}
		return "", nil
	}
}
