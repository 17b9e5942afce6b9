package dimsesource_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/priorflow/priorflow/archive/dicomtest"
	"github.com/priorflow/priorflow/dimse"
	"github.com/priorflow/priorflow/internal/dcmtktest"
	"github.com/priorflow/priorflow/internal/orthanctest"
	"github.com/priorflow/priorflow/internal/tlstest"
	"github.com/priorflow/priorflow/search"
	"github.com/priorflow/priorflow/search/dimsesource"
	"github.com/suyashkumar/dicom/pkg/tag"
)

func source(t *testing.T, addr, calledAE string) *dimsesource.Source {
	t.Helper()
	c := &dimse.Client{Addr: addr, Config: dimse.Config{CallingAE: orthanctest.SCUAE, CalledAE: calledAE, IdleTimeout: 10 * time.Second}}
	s, err := dimsesource.New(search.SourceInfo{Name: "pacs", Kind: search.KindDIMSE, URL: "dicom://" + addr, Issuer: "HOSP-B",
		Match: search.MatchIdentifier, Mode: search.ModeImport}, c)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestFindStudies_Orthanc(t *testing.T) {
	t.Parallel()
	o := orthanctest.Start(t)
	day := func(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 9, 30, 0, 0, time.UTC) }
	ct := dicomtest.NewStudy(t, dicomtest.WithPatient("B1", "HOSP-B", "MÜLLER^JÜRGEN HANS"), dicomtest.WithModality("CT"),
		dicomtest.WithTemplate(dicomtest.FileMR), dicomtest.WithSeries(2), dicomtest.WithInstancesPerSeries(2),
		dicomtest.WithStudyDate(day(2025, 2, 3)), dicomtest.WithStudyDescription("CT CHEST"))
	old := dicomtest.NewStudy(t, dicomtest.WithPatient("B1", "HOSP-B", "MÜLLER^JÜRGEN HANS"), dicomtest.WithModality("MR"),
		dicomtest.WithStudyDate(day(2012, 1, 1)))
	otherDomain := dicomtest.NewStudy(t, dicomtest.WithPatient("B1", "HOSP-Z", "SOMEONE^ELSE"), dicomtest.WithModality("CT"))
	o.UploadStudy(t, ct, old, otherDomain)
	s := source(t, fmt.Sprintf("127.0.0.1:%d", o.Port), o.AET)
	ctx := context.Background()

	t.Run("by identifier and issuer, since a date, with series", func(t *testing.T) {
		got, err := s.FindStudies(ctx, search.PatientQuery{PatientID: "B1", Issuer: "HOSP-B", Since: day(2020, 1, 1), WithSeries: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 {
			t.Fatalf("%d studies, want the CT of 2025 only", len(got))
		}
		st := got[0]
		if st.StudyInstanceUID != ct.StudyInstanceUID || st.Source != "pacs" || st.RetrieveBase != "dicom://"+fmt.Sprintf("127.0.0.1:%d", o.Port) {
			t.Errorf("study %+v", st)
		}
		if st.Patient.ID != "B1" || st.Patient.Issuer != "HOSP-B" || st.Patient.Family != "MÜLLER" || !slices.Equal(st.Patient.Given, []string{"JÜRGEN", "HANS"}) {
			t.Errorf("patient %+v", st.Patient)
		}
		if !st.Date.Equal(day(2025, 2, 3)) || st.Description != "CT CHEST" || !slices.Equal(st.ModalitiesInStudy, []string{"CT"}) {
			t.Errorf("date %v, description %q, modalities %v", st.Date, st.Description, st.ModalitiesInStudy)
		}
		if st.NumberOfInstances != 4 || st.NumberOfSeries != 2 || len(st.Series) != 2 {
			t.Errorf("%d instances in %d series (%d listed), want 4 in 2", st.NumberOfInstances, st.NumberOfSeries, len(st.Series))
		}
		for _, se := range st.Series {
			if se.Modality != "CT" || se.NumberOfInstances != 2 {
				t.Errorf("series %+v", se)
			}
		}
	})

	t.Run("by demographics", func(t *testing.T) {
		got, err := s.FindStudies(ctx, search.PatientQuery{Demographics: &search.Demographics{Family: "Müller"}})
		if err != nil {
			t.Fatal(err)
		}
		var uids []string
		for _, st := range got {
			uids = append(uids, st.StudyInstanceUID)
		}
		slices.Sort(uids)
		want := []string{ct.StudyInstanceUID, old.StudyInstanceUID}
		slices.Sort(want)
		if !slices.Equal(uids, want) {
			t.Errorf("studies %v, want %v (the family name matched beyond ASCII)", uids, want)
		}
	})

	t.Run("a called AE title the PACS does not answer to is rejected", func(t *testing.T) {
		_, err := source(t, fmt.Sprintf("127.0.0.1:%d", o.Port), "NOT-THE-PACS").FindStudies(ctx, search.PatientQuery{PatientID: "B1"})
		if !errors.Is(err, search.ErrRejected) {
			t.Errorf("err = %v, want ErrRejected", err)
		}
	})
}

func TestFindStudies_Unreachable(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, err = source(t, addr, "PACS").FindStudies(context.Background(), search.PatientQuery{PatientID: "B1"})
	if !errors.Is(err, search.ErrUnavailable) {
		t.Errorf("err = %v, want ErrUnavailable", err)
	}
}

func TestFindStudies_NothingToAskWith(t *testing.T) {
	t.Parallel()
	_, err := source(t, "127.0.0.1:1", "PACS").FindStudies(context.Background(), search.PatientQuery{})
	if !errors.Is(err, search.ErrRejected) {
		t.Errorf("err = %v, want ErrRejected", err)
	}
}

// DICOM TLS (PS3.15 B.1) against Orthanc with its DICOM port TLS only and
// a client certificate required.
func TestFindStudies_DICOMTLS(t *testing.T) {
	t.Parallel()
	pacsCA, ourCA, otherCA := tlstest.NewCA(t, "pacs-ca"), tlstest.NewCA(t, "priorflow-ca"), tlstest.NewCA(t, "other-ca")
	_, srvCert, srvKey := pacsCA.Issue(t, "orthanc", true)
	_, cliCert, cliKey := ourCA.Issue(t, "priorflow", false)
	_, strangerCert, strangerKey := otherCA.Issue(t, "priorflow", false)
	o := orthanctest.StartWith(t, orthanctest.Options{DICOMTLS: &orthanctest.DICOMTLS{CertFile: srvCert, KeyFile: srvKey,
		TrustedFile: ourCA.File, RequireClientCertificate: true}})
	st := dicomtest.NewStudy(t, dicomtest.WithPatient("TLS1", "HOSP-B", "SECURE^SAM"))
	o.UploadStudy(t, st)
	var client *dimse.Client
	find := func(mtls *search.MTLS) ([]search.RemoteStudy, error) {
		cfg := &search.SourceConfig{Name: "pacs", Kind: search.KindDIMSE, URL: fmt.Sprintf("dicom://127.0.0.1:%d", o.Port),
			CalledAETitle: o.AET, CallingAETitle: orthanctest.SCUAE, Timeout: 10 * time.Second, Issuer: "HOSP-B",
			Match: search.MatchIdentifier, Mode: search.ModeImport, Auth: search.Auth{MTLS: mtls}}
		c, err := dimsesource.NewClient(cfg)
		if err != nil {
			t.Fatal(err)
		}
		client = c
		s, err := dimsesource.New(cfg.Info(), c)
		if err != nil {
			t.Fatal(err)
		}
		return s.FindStudies(context.Background(), search.PatientQuery{PatientID: "TLS1", Issuer: "HOSP-B"})
	}
	got, err := find(&search.MTLS{CertFile: cliCert, KeyFile: cliKey, CAFile: pacsCA.File})
	if err != nil || len(got) != 1 || got[0].StudyInstanceUID != st.StudyInstanceUID {
		t.Fatalf("over TLS: %d studies, %v; want the one", len(got), err)
	}
	// The retrieval's C-GET goes over the same client.
	n := 0
	q := dimse.Identifier{{Tag: tag.QueryRetrieveLevel, VR: "CS", Value: "STUDY"}, {Tag: tag.StudyInstanceUID, VR: "UI", Value: st.StudyInstanceUID}}
	res, err := client.Get(context.Background(), dimse.StudyRootGet, q, func(r *dimse.StoreRequest) (uint16, error) {
		n++
		_, err := io.Copy(io.Discard, r.Object)
		return dimse.StatusSuccess, err
	})
	if err != nil || n != 1 || res.Completed != 1 {
		t.Fatalf("C-GET over TLS: %d objects, %+v, %v; want the one", n, res, err)
	}
	for _, c := range []struct {
		name string
		mtls *search.MTLS
		want error
	}{
		{"no client certificate", &search.MTLS{CAFile: pacsCA.File}, search.ErrRejected},
		{"a client certificate of a CA the PACS does not trust", &search.MTLS{CertFile: strangerCert, KeyFile: strangerKey, CAFile: pacsCA.File}, search.ErrRejected},
		{"a PACS certificate of a CA Priorflow does not trust", &search.MTLS{CertFile: cliCert, KeyFile: cliKey, CAFile: otherCA.File}, search.ErrRejected},
		{"no TLS", nil, search.ErrUnavailable},
	} {
		if _, err := find(c.mtls); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}

// The same against DCMTK's dcmqrscp, which checks every identifier it is
// sent (--check-find) and serves C-GET from its own index.
func TestFindStudies_DCMQRSCP(t *testing.T) {
	t.Parallel()
	day := func(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 9, 30, 0, 0, time.UTC) }
	ct := dicomtest.NewStudy(t, dicomtest.WithPatient("Q1", "HOSP-B", "MÜLLER^JÜRGEN"), dicomtest.WithModality("CT"),
		dicomtest.WithTemplate(dicomtest.FileMR), dicomtest.WithSeries(2), dicomtest.WithInstancesPerSeries(2),
		dicomtest.WithStudyDate(day(2025, 2, 3)), dicomtest.WithStudyDescription("CT CHEST"))
	old := dicomtest.NewStudy(t, dicomtest.WithPatient("Q1", "HOSP-B", "MÜLLER^JÜRGEN"), dicomtest.WithStudyDate(day(2012, 1, 1)))
	var files [][]byte
	for _, st := range []*dicomtest.Study{ct, old} {
		for _, in := range st.Instances() {
			files = append(files, in.Bytes)
		}
	}
	q := dcmtktest.StartQRSCP(t, files)
	c := &dimse.Client{Addr: q.Addr, Config: dimse.Config{CallingAE: "PRIORFLOW", CalledAE: q.AET, IdleTimeout: 10 * time.Second}}
	s, err := dimsesource.New(search.SourceInfo{Name: "qr", Kind: search.KindDIMSE, URL: "dicom://" + q.Addr, Issuer: "HOSP-B",
		Match: search.MatchIdentifier, Mode: search.ModeImport}, c)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.FindStudies(context.Background(), search.PatientQuery{PatientID: "Q1", Since: day(2020, 1, 1), WithSeries: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].StudyInstanceUID != ct.StudyInstanceUID {
		t.Fatalf("studies %+v, want the CT of 2025 only", got)
	}
	st := got[0]
	// dcmqrscp gives no NumberOf…RelatedInstances (optional keys): the
	// count stays unknown (0), which makes the retrieval list the study's
	// instances rather than trust a count.
	if st.Patient.Family != "MÜLLER" || st.Description != "CT CHEST" || st.NumberOfSeries != 2 || len(st.Series) != 2 {
		t.Errorf("study %+v", st)
	}
	n := 0
	idq := dimse.Identifier{{Tag: tag.QueryRetrieveLevel, VR: "CS", Value: "STUDY"}, {Tag: tag.StudyInstanceUID, VR: "UI", Value: ct.StudyInstanceUID}}
	res, err := c.Get(context.Background(), dimse.StudyRootGet, idq, func(r *dimse.StoreRequest) (uint16, error) {
		n++
		_, err := io.Copy(io.Discard, r.Object)
		return dimse.StatusSuccess, err
	})
	if err != nil || n != 4 || res.Completed != 4 {
		t.Fatalf("C-GET: %d objects, %+v, %v; want 4", n, res, err)
	}
}
