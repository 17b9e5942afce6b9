package pullbench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/priorflow/priorflow/archive/dicomtest"
)

// Identity of the generated patients at the source, as the prefetch rule's
// source (Issuer) and the local Patient resources know them.
const (
	SourceName   = "hospital-b"
	SourceIssuer = "HOSP-B"
	birthDate    = "19800101"
)

// StudySpec is a study to generate at the source.
type StudySpec struct {
	PatientID string
	// Template is the dicomtest testdata file every instance copies, such
	// as dicomtest.FileCTMulti (1 MB) or dicomtest.FileMR (64 KB).
	Template  string
	Instances int
	// PerSeries is the instances per series (the last series may hold
	// fewer); one series is generated in memory at a time.
	PerSeries int
}

// SourceStudy is a study stored at the source.
type SourceStudy struct {
	StudyInstanceUID string
	PatientID        string
	Instances        int
	Bytes            int64 // the DICOM files' bytes
}

// Uploader stores generated studies in an Orthanc (POST /instances).
type Uploader struct {
	Gen     *dicomtest.Generator
	URL     string // Orthanc's REST root
	Clients int    // concurrent uploads
	HTTP    *http.Client
}

// Upload generates spec series by series, with new UIDs, the patient
// spec.PatientID of SourceIssuer and a study date a year ago, and stores
// every instance in the Orthanc.
func (u *Uploader) Upload(ctx context.Context, spec StudySpec) (*SourceStudy, error) {
	if spec.Instances < 1 || spec.PerSeries < 1 || spec.PatientID == "" || spec.Template == "" {
		return nil, errors.New("pullbench.Upload: patient, template, instances and per-series are required")
	}
	st := &SourceStudy{StudyInstanceUID: dicomtest.NewUID(), PatientID: spec.PatientID}
	accession := "PULL" + strconv.FormatInt(time.Now().UnixNano()%1e9, 10)
	date := time.Now().AddDate(-1, 0, 0).UTC().Truncate(time.Hour)
	for series := 1; st.Instances < spec.Instances; series++ {
		n := min(spec.PerSeries, spec.Instances-st.Instances)
		g, err := u.Gen.Study(
			dicomtest.WithStudyInstanceUID(st.StudyInstanceUID),
			dicomtest.WithPatient(spec.PatientID, SourceIssuer, "PULL^BENCH"),
			dicomtest.WithAccession(accession),
			dicomtest.WithModality("CT"),
			dicomtest.WithTemplate(spec.Template),
			dicomtest.WithStudyDate(date),
			dicomtest.WithStudyDescription("PULL BENCH CT"),
			dicomtest.WithInstancesPerSeries(n),
			dicomtest.WithEdits(dicomtest.Set(tag.PatientBirthDate, birthDate), dicomtest.Set(tag.PatientSex, "F"),
				dicomtest.Set(tag.BodyPartExamined, "CHEST"), dicomtest.Set(tag.SeriesNumber, strconv.Itoa(series))),
		)
		if err != nil {
			return nil, fmt.Errorf("pullbench.Upload: %w", err)
		}
		ins := g.Instances()
		if err := u.store(ctx, ins); err != nil {
			return nil, err
		}
		for _, in := range ins {
			st.Bytes += int64(len(in.Bytes))
		}
		st.Instances += len(ins)
	}
	return st, nil
}

// store uploads instances on u.Clients workers.
func (u *Uploader) store(ctx context.Context, ins []*dicomtest.Instance) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := make(chan *dicomtest.Instance)
	var wg sync.WaitGroup
	for range max(u.Clients, 1) {
		wg.Go(func() {
			for in := range next {
				if err := u.post(ctx, in.Bytes); err != nil {
					cancel(err)
				}
			}
		})
	}
	for _, in := range ins {
		select {
		case next <- in:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(next)
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return fmt.Errorf("pullbench: upload to the source: %w", err)
	}
	return nil
}

func (u *Uploader) post(ctx context.Context, dcm []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.URL+"/instances", bytes.NewReader(dcm))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/dicom")
	resp, err := u.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var r struct{ Status string }
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &r) != nil || r.Status != "Success" {
		return fmt.Errorf("POST /instances: HTTP %d: %.300s", resp.StatusCode, body)
	}
	return nil
}
