package retrieve

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// A source that starts an instance listing and then goes silent: the
// listing is abandoned as unavailable (so the study is retried later)
// instead of holding the job while its heartbeats keep it alive.
func TestGet_ListingThatStallsIsAbandoned(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/dicom+json")
		w.WriteHeader(http.StatusOK)
		w.Write([]byte(`[{"0020000E": {"vr": "UI", "Value": ["1.2`))
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)

	// get needs no archive: a bare Retriever and source will do.
	r := &Retriever{}
	src := &source{Source: Source{Name: "b", Client: srv.Client(), IdleTimeout: 200 * time.Millisecond}, sem: make(chan struct{}, 1)}
	done := make(chan error, 1)
	go func() {
		_, err := r.get(context.Background(), src, srv.URL+"/studies/1.2.3/instances")
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "nothing received") {
			t.Errorf("err = %v, want ErrUnavailable naming the silence", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the stalled listing was never abandoned")
	}
}
