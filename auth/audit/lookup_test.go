package audit_test

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/priorflow/priorflow/auth/audit"
	"github.com/priorflow/priorflow/fhir/postgres"
)

// The patient of a study is its ImagingStudy's Patient subject as the
// search index holds it: relative, another server's by absolute URL, none
// for other subjects, deleted studies and studies not indexed.
func TestStudyPatientLookup(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	ctx := context.Background()
	studies := map[string]string{ // StudyInstanceUID → subject
		"1.2.840.1":  "Patient/p1",
		"1.2.840.2":  "Patient/p2/_history/3",
		"1.2.840.3":  "https://other.example.org/fhir/Patient/p9",
		"1.2.840.4":  "Group/g1",
		"1.2.840.5":  "Patient/p5", // deleted below
		"1.2.840.77": "Patient/p7", // indexed twice: both name p7
	}
	studies2 := map[string]string{"1.2.840.77": "Patient/p7"}
	var deleted string
	if err := store.InTx(ctx, func(tx *postgres.Tx) error {
		for _, set := range []map[string]string{studies, studies2} {
			for uid, subject := range set {
				body := `{"resourceType":"ImagingStudy","status":"available","identifier":[{"system":"urn:dicom:uid","value":"urn:oid:` + uid + `"}]`
				if subject != "" {
					body += `,"subject":{"reference":"` + subject + `"}`
				}
				res, _, err := store.Codec().Parse([]byte(body + "}"))
				if err != nil {
					return err
				}
				r, err := tx.Create(ctx, res)
				if err != nil {
					return err
				}
				if uid == "1.2.840.5" {
					deleted = r.ID
				}
			}
		}
		_, err := tx.Delete(ctx, "ImagingStudy", deleted, 0)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	got, err := audit.StudyPatientLookup(store)(ctx, []string{"1.2.840.1", "1.2.840.2", "1.2.840.3", "1.2.840.4",
		"1.2.840.5", "1.2.840.77", "1.2.840.8", "../1.2", ""})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"1.2.840.1":  "Patient/p1",
		"1.2.840.2":  "Patient/p2",
		"1.2.840.3":  "https://other.example.org/fhir/Patient/p9",
		"1.2.840.77": "Patient/p7",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("patients of the studies (-want +got):\n%s", diff)
	}
	if got, err := audit.StudyPatientLookup(store)(ctx, nil); err != nil || len(got) != 0 {
		t.Errorf("no studies: %v, %v", got, err)
	}
}

// BenchmarkStudyPatientLookup looks up the patients of a QIDO-RS response's
// 20 studies of 500 instances each.
func BenchmarkStudyPatientLookup(b *testing.B) {
	store := newStore(b)
	ctx := context.Background()
	var uids []string
	if err := store.InTx(ctx, func(tx *postgres.Tx) error {
		for s := range 20 {
			uid := "1.2.840.9." + itoa(s)
			uids = append(uids, uid)
			var inst strings.Builder
			for i := range 500 {
				if i > 0 {
					inst.WriteByte(',')
				}
				inst.WriteString(`{"uid":"` + uid + `.1.` + itoa(i) + `","sopClass":{"system":"urn:ietf:rfc:3986","code":"urn:oid:1.2.840.10008.5.1.4.1.1.2"},"number":` + itoa(i+1) + `}`)
			}
			body := `{"resourceType":"ImagingStudy","status":"available","identifier":[{"system":"urn:dicom:uid","value":"urn:oid:` + uid + `"}],` +
				`"subject":{"reference":"Patient/p` + itoa(s) + `"},"series":[{"uid":"` + uid + `.1","modality":{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"CT"},"instance":[` + inst.String() + `]}]}`
			res, _, err := store.Codec().Parse([]byte(body))
			if err != nil {
				return err
			}
			if _, err := tx.Create(ctx, res); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	lookup := audit.StudyPatientLookup(store)
	b.ReportAllocs()
	for b.Loop() {
		got, err := lookup(ctx, uids)
		if err != nil || len(got) != len(uids) {
			b.Fatalf("%d patients (%v)", len(got), err)
		}
	}
}
