// Package demo seeds the remote site of the demo network that `make run`
// starts (scripts/run.sh): real sample studies, generated with
// archive/dicomtest from the TCIA files of github.com/suyashkumar/dicom, for
// a few patients, stored over DICOMweb STOW-RS (PS3.18 10.5) into an Orthanc
// (/dicom-web) or a Priorflow node playing the remote site (/dicomweb).
//
// One of the patients is the patient of the sample SIU^S12
// (triggers/hl7v2/testdata/SIU-S12-01.hl7): PID-3 PATID1234 with assigning
// authority (CX-4.1) "test1", which the network search maps to a source
// whose issuer is "test1" (search.IssuerMatches). Sending that message to
// the local api therefore finds these studies as priors.
package demo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/priorflow/priorflow/archive/cdimport"
	"github.com/priorflow/priorflow/archive/dicomtest"
)

// The patient of the sample SIU^S12, as its PID segment carries it.
const (
	SIUPatientID   = "PATID1234"
	SIUIssuer      = "test1" // PID-3.4.1, the assigning authority's namespace
	SIUPatientName = "EVERYMAN^ADAM^A^Dr.^III"
	SIUBirthDate   = "19880818" // PID-7
	SIUSex         = "M"        // PID-8
)

// Study describes one seeded study.
type Study struct {
	PatientID, Issuer, PatientName, BirthDate, Sex string
	Modality, Template, Description                string
	// Age is how long before now the study was made.
	Age time.Duration
	// Series and Instances per series.
	Series, Instances int
}

const year = 365 * 24 * time.Hour

// Studies is the demo data set: for the SIU patient a CT a year ago, an MR
// three years ago (the two priors the default rule picks, maxPriors 2) and
// a CR four years ago; a study each for two other patients of the remote
// site, which no prefetch of the SIU patient may touch. Every date is in
// the default rule's 5-year lookback.
func Studies() []Study {
	siu := func(mod, tmpl, desc string, age time.Duration) Study {
		return Study{PatientID: SIUPatientID, Issuer: SIUIssuer, PatientName: SIUPatientName, BirthDate: SIUBirthDate,
			Sex: SIUSex, Modality: mod, Template: tmpl, Description: desc, Age: age, Series: 2, Instances: 2}
	}
	return []Study{
		siu("CT", dicomtest.FileCTMulti, "CT ABDOMEN WITH CONTRAST", 1*year),
		siu("MR", dicomtest.FileMR, "MR ABDOMEN", 3*year),
		{PatientID: SIUPatientID, Issuer: SIUIssuer, PatientName: SIUPatientName, BirthDate: SIUBirthDate, Sex: SIUSex,
			Modality: "CR", Template: dicomtest.FileCR, Description: "CR CHEST", Age: 4 * year, Series: 1, Instances: 1},
		{PatientID: "DEMO-0002", Issuer: SIUIssuer, PatientName: "DOE^JANE", BirthDate: "19750203", Sex: "F",
			Modality: "MR", Template: dicomtest.FileMR, Description: "MR BRAIN", Age: 2 * year, Series: 1, Instances: 3},
		{PatientID: "DEMO-0003", Issuer: SIUIssuer, PatientName: "ROE^RICHARD", BirthDate: "19600512", Sex: "M",
			Modality: "PT", Template: dicomtest.FilePET1, Description: "PET CT WHOLE BODY", Age: 6 * 30 * 24 * time.Hour, Series: 1, Instances: 2},
	}
}

// Seeded is the outcome of Seed.
type Seeded struct {
	StudyInstanceUID string
	Study            Study
	Instances        int
}

// Seed generates studies and stores each with one STOW-RS request to the
// DICOMweb root, such as http://127.0.0.1:8042/dicom-web or
// http://127.0.0.1:8081/dicomweb. now anchors the study dates.
func Seed(ctx context.Context, hc *http.Client, root string, now time.Time, studies []Study) ([]Seeded, error) {
	client, err := cdimport.NewClient(root, hc)
	if err != nil {
		return nil, fmt.Errorf("demo seed: %w", err)
	}
	gen, err := newGenerator()
	if err != nil {
		return nil, fmt.Errorf("demo seed: %w", err)
	}
	var out []Seeded
	for _, s := range studies {
		st, err := gen.Study(
			dicomtest.WithPatient(s.PatientID, s.Issuer, s.PatientName),
			dicomtest.WithModality(s.Modality), dicomtest.WithTemplate(s.Template),
			dicomtest.WithStudyDate(now.Add(-s.Age).UTC().Truncate(time.Second)),
			dicomtest.WithStudyDescription(s.Description),
			dicomtest.WithSeries(s.Series), dicomtest.WithInstancesPerSeries(s.Instances),
			dicomtest.WithEdits(dicomtest.Set(tag.PatientBirthDate, s.BirthDate), dicomtest.Set(tag.PatientSex, s.Sex)))
		if err != nil {
			return out, fmt.Errorf("demo seed: %w", err)
		}
		var parts []cdimport.StorePart
		for _, in := range st.Instances() {
			b := in.Bytes
			parts = append(parts, cdimport.StorePart{Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }})
		}
		resp, err := client.Store(ctx, parts, nil)
		if err != nil {
			return out, fmt.Errorf("demo seed: %s study of %s: %w", s.Modality, s.PatientID, err)
		}
		if len(resp.Stored) != len(parts) {
			return out, fmt.Errorf("demo seed: %s study of %s: %d of %d instances stored (HTTP %d %s)",
				s.Modality, s.PatientID, len(resp.Stored), len(parts), resp.StatusCode, resp.Message)
		}
		out = append(out, Seeded{StudyInstanceUID: st.StudyInstanceUID, Study: s, Instances: len(parts)})
	}
	return out, nil
}

// newGenerator returns a dicomtest.Generator outside a test: dicomtest
// reports setup errors through a testing.TB, which tbAdapter turns into an
// error.
func newGenerator() (g *dicomtest.Generator, err error) {
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(tbFailure)
			if !ok {
				panic(r)
			}
			g, err = nil, errors.New(string(f))
		}
	}()
	return dicomtest.NewGenerator(tbAdapter{}), nil
}

// tbFailure is the panic value of a tbAdapter failure.
type tbFailure string

// tbAdapter is the part of testing.TB that dicomtest.NewGenerator uses
// (Helper, Fatal, Fatalf); the embedded nil interface supplies the
// unexported method and panics if anything else is called.
type tbAdapter struct{ testing.TB }

func (tbAdapter) Helper()                           {}
func (tbAdapter) Fatal(args ...any)                 { panic(tbFailure(fmt.Sprint(args...))) }
func (tbAdapter) Fatalf(format string, args ...any) { panic(tbFailure(fmt.Sprintf(format, args...))) }
