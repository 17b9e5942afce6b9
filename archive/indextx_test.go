package archive_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/priorflow/priorflow/archive"
	"github.com/priorflow/priorflow/archive/archivetest"
	"github.com/priorflow/priorflow/archive/dicomtest"
	"github.com/priorflow/priorflow/fhir/postgres"
)

// Requests that each carry instances of several studies, of two patients
// shared between the studies, in every order, stored concurrently: a
// request commits once, holding the locks of all its studies and patients,
// and may neither deadlock with another nor create a second Patient.
func TestStore_ConcurrentRequestsOverlappingStudiesAndPatients(t *testing.T) {
	t.Parallel()
	env := archivetest.New(t, "http://pf.example/dicomweb")
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 4 {
		var studies []*dicomtest.Study
		var all []*dicomtest.Instance
		for k := range 4 {
			st := dicomtest.NewStudy(t, dicomtest.WithPatient(fmt.Sprintf("MRN-R%d-P%d", round, k%2), "", "SHARED^PAT"),
				dicomtest.WithSeries(2), dicomtest.WithInstancesPerSeries(3))
			studies = append(studies, st)
			all = append(all, st.Instances()...)
		}
		rng.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
		var wg sync.WaitGroup
		for r := 0; r < len(all); r += 3 { // 8 requests of 3 instances, mostly of different studies
			wg.Go(func() {
				var objs []*archive.Object
				for _, in := range all[r : r+3] {
					objs = append(objs, spool(t, env.Archive, in.Bytes))
				}
				for _, res := range env.Archive.Store(context.Background(), objs, "") {
					if res.Err != nil {
						t.Errorf("round %d: %s: %v", round, res.SOPInstanceUID, res.Err)
					}
				}
			})
		}
		wg.Wait()
		subjects := map[string]map[any]bool{}
		for k, st := range studies {
			is := imagingStudy(t, env, st.StudyInstanceUID)
			if is["numberOfInstances"] != float64(6) || is["numberOfSeries"] != float64(2) {
				t.Errorf("round %d study %d: counts %v/%v, want 2 series, 6 instances", round, k, is["numberOfSeries"], is["numberOfInstances"])
			}
			pid := fmt.Sprintf("MRN-R%d-P%d", round, k%2)
			if subjects[pid] == nil {
				subjects[pid] = map[any]bool{}
			}
			subjects[pid][is["subject"].(map[string]any)["reference"]] = true
		}
		for pid, refs := range subjects {
			if len(refs) != 1 {
				t.Errorf("round %d: the studies of %s name %d Patients, want 1", round, pid, len(refs))
			}
			if n := patientCount(t, env, env.Archive.PatientSystem("", "", "")+"|"+pid); n != 1 {
				t.Errorf("round %d: %d Patients for %s, want 1", round, n, pid)
			}
		}
	}
}

// In one request: a study filed under a new patient, a study whose UID an
// ImagingStudy of that same patient already lists (the network search
// indexed it before the images came), a study that an ImagingStudy of
// another patient claims, and a study whose PatientID two Patients carry.
// The last two are refused and leave nothing; the first two are stored, the
// listed ImagingStudy completed rather than doubled.
func TestStore_RefusedStudiesFailAloneInTheRequest(t *testing.T) {
	t.Parallel()
	env := archivetest.New(t, "http://pf.example/dicomweb")
	ctx := context.Background()
	sys := env.Archive.PatientSystem("", "", "")
	known := createResource(t, env, `{"resourceType":"Patient","identifier":[{"system":"`+sys+`","value":"MRN-KNOWN"}]}`)
	other := createResource(t, env, `{"resourceType":"Patient","identifier":[{"system":"`+sys+`","value":"MRN-OTHER"}]}`)
	for range 2 {
		createResource(t, env, `{"resourceType":"Patient","identifier":[{"system":"`+sys+`","value":"MRN-TWICE"}]}`)
	}
	fresh := dicomtest.NewStudy(t, dicomtest.WithPatient("MRN-FRESH", "", "NEW^PAT"), dicomtest.WithInstancesPerSeries(2))
	listed := dicomtest.NewStudy(t, dicomtest.WithPatient("MRN-KNOWN", "", "KNOWN^PAT"), dicomtest.WithInstancesPerSeries(2))
	claimed := dicomtest.NewStudy(t, dicomtest.WithPatient("MRN-KNOWN", "", "KNOWN^PAT"), dicomtest.WithInstancesPerSeries(2))
	twice := dicomtest.NewStudy(t, dicomtest.WithPatient("MRN-TWICE", "", "TWICE^PAT"), dicomtest.WithInstancesPerSeries(2))
	listedID := createResource(t, env, `{"resourceType":"ImagingStudy","status":"available",
		"identifier":[{"system":"urn:dicom:uid","value":"urn:oid:`+listed.StudyInstanceUID+`"}],"subject":{"reference":"Patient/`+known+`"}}`)
	claimedID := createResource(t, env, `{"resourceType":"ImagingStudy","status":"available",
		"identifier":[{"system":"urn:dicom:uid","value":"urn:oid:`+claimed.StudyInstanceUID+`"}],"subject":{"reference":"Patient/`+other+`"}}`)

	var objs []*archive.Object
	for _, st := range []*dicomtest.Study{claimed, fresh, twice, listed} {
		for _, in := range st.Instances() {
			objs = append(objs, spool(t, env.Archive, in.Bytes))
		}
	}
	blobsBefore := env.BlobCount(t)
	for _, r := range env.Archive.Store(ctx, objs, "") {
		refused := r.StudyUID == claimed.StudyInstanceUID || r.StudyUID == twice.StudyInstanceUID
		switch {
		case refused && !errors.Is(r.Err, archive.ErrPatientMismatch):
			t.Errorf("%s of a refused study: err %v, want ErrPatientMismatch", r.SOPInstanceUID, r.Err)
		case !refused && r.Err != nil:
			t.Errorf("%s: %v", r.SOPInstanceUID, r.Err)
		}
	}
	for _, st := range []*dicomtest.Study{claimed, twice} {
		if _, err := env.Archive.StudyFHIRID(ctx, st.StudyInstanceUID); !errors.Is(err, archive.ErrNotFound) {
			t.Errorf("refused study %s indexed: %v", st.StudyInstanceUID, err)
		}
	}
	if got, want := env.BlobCount(t), blobsBefore+4; got != want {
		t.Errorf("%d blobs, want %d (the refused studies' blobs removed)", got, want)
	}
	if is := imagingStudy(t, env, listed.StudyInstanceUID); is["id"] != listedID || is["numberOfInstances"] != float64(2) {
		t.Errorf("listed study: ImagingStudy %v with %v instances, want %s with 2", is["id"], is["numberOfInstances"], listedID)
	}
	if is := imagingStudy(t, env, claimed.StudyInstanceUID); is["id"] != claimedID || is["numberOfInstances"] != nil {
		t.Errorf("the other patient's ImagingStudy changed: %v", is)
	}
	if is := imagingStudy(t, env, fresh.StudyInstanceUID); is["numberOfInstances"] != float64(2) {
		t.Errorf("fresh study: %v instances", is["numberOfInstances"])
	}
	if n := patientCount(t, env, sys+"|MRN-FRESH"); n != 1 {
		t.Errorf("%d Patients for the fresh study, want 1", n)
	}
}

func createResource(t *testing.T, env *archivetest.Env, body string) string {
	t.Helper()
	res, _, err := env.Store.Codec().Parse([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	var id string
	err = env.Store.InTx(context.Background(), func(tx *postgres.Tx) error {
		out, err := tx.Create(context.Background(), res)
		if err == nil {
			id = out.ID
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func patientCount(t *testing.T, env *archivetest.Env, identifier string) int {
	t.Helper()
	var n int
	err := env.Store.Pool().QueryRow(context.Background(), `
		SELECT count(DISTINCT r.rid) FROM resource r JOIN idx_token t ON t.rid = r.rid
		WHERE r.type = 'Patient' AND NOT r.deleted AND t.param = 'identifier' AND t.system || '|' || t.code = $1`, identifier).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
