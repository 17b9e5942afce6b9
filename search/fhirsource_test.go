package search_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/priorflow/priorflow/archive/dicomtest"
	"github.com/priorflow/priorflow/fhir/rest"
	"github.com/priorflow/priorflow/internal/database/dbtest"
	"github.com/priorflow/priorflow/search"
	"github.com/priorflow/priorflow/search/fhirsource"
)

// peer is a second Priorflow node: its archive and FHIR API.
func peer(t *testing.T) (*local, string) {
	t.Helper()
	p := newLocal(t)
	mux := http.NewServeMux()
	ts := httptest.NewUnstartedServer(mux)
	base := "http://" + ts.Listener.Addr().String() + "/fhir"
	h, err := rest.New(p.store, p.store.Codec(), dbtest.Logger(), rest.Config{BaseURL: base, Software: "Priorflow", Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	mux.Handle("/fhir/", http.StripPrefix("/fhir", h.Routes()))
	ts.Start()
	t.Cleanup(ts.Close)
	return p, base
}

func TestSearcher_PriorflowPeer(t *testing.T) {
	t.Parallel()
	p, base := peer(t)
	g := dicomtest.NewGenerator(t)
	pj := person{"P100", "HOSP-P", "DOE^JANE", "19800101", "F"}
	recent := study(t, g, pj, day(2025, 6, 1), "CT", "CHEST", dicomtest.WithSeries(2))
	old := study(t, g, pj, day(2019, 6, 1), "CT", "CHEST")
	other := study(t, g, person{"P999", "HOSP-P", "ROE^RICHARD", "19700101", "M"}, day(2025, 6, 2), "CT", "CHEST")
	p.storeLocal(t, recent.Instances()...)
	p.storeLocal(t, old.Instances()...)
	p.storeLocal(t, other.Instances()...)

	l := newLocal(t)
	ref := localPatient(t, l, "Doe", []string{"Jane"}, "1980-01-01", "female",
		map[string]any{"system": "urn:priorflow:issuer:HOSP-P", "value": "P100"})
	src, err := fhirsource.New(search.SourceInfo{Name: "node-p", Kind: search.KindPriorflow, URL: base, Issuer: "HOSP-P",
		Match: search.MatchIdentifier, Mode: search.ModeImport}, &http.Client{Transport: &http.Transport{DisableCompression: true}})
	if err != nil {
		t.Fatal(err)
	}
	s := newSearcher(t, l, search.Entry{Source: src, Timeout: 5 * time.Second, Retries: 1})
	res, err := s.Search(context.Background(), search.Job{ID: "job-p", Rule: "priors", PatientRef: ref, Criteria: chestCTCriteria()})
	if err != nil {
		t.Fatal(err)
	}
	if o := outcome(res, "node-p"); o.Status != search.StatusOK || o.Accepted != 1 {
		t.Fatalf("outcome %+v, want one accepted study (the old one is outside the lookback)", o)
	}
	if len(res.Retrieve) != 1 {
		t.Fatalf("retrieve %+v", res.Retrieve)
	}
	got := res.Retrieve[0].Study
	if got.StudyInstanceUID != recent.StudyInstanceUID || got.NumberOfInstances != 2 || len(got.Series) != 2 {
		t.Errorf("study %s instances %d series %d", got.StudyInstanceUID, got.NumberOfInstances, len(got.Series))
	}
	if got.RetrieveBase != "http://local.test/dicom-web" {
		t.Errorf("retrieve base %q, want the peer's DICOMweb from its Endpoint", got.RetrieveBase)
	}
	if _, ok := res.Indexed[other.StudyInstanceUID]; ok {
		t.Error("another patient's study was indexed")
	}
}
