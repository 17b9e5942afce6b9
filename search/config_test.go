package search_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/priorflow/priorflow/search"
)

func TestParseSources(t *testing.T) {
	t.Parallel()
	t.Run("valid source with defaults, rules ignored", func(t *testing.T) {
		srcs, err := search.ParseSources("p.yaml", []byte(`rules:
  - name: r
    on: [ed-arrival]
sources:
  - name: hospital-b
    kind: dicomweb
    url: http://127.0.0.1:8042/dicom-web/
    issuer: HOSP-B
    timeout: 3s
    auth: {bearerTokenFile: /run/secrets/b-token}
`))
		if err != nil {
			t.Fatal(err)
		}
		s := srcs[0]
		if s.URL != "http://127.0.0.1:8042/dicom-web" || s.Timeout != 3*time.Second || s.Match != search.MatchIdentifier ||
			s.Mode != search.ModeImport || s.Concurrency != search.DefaultConcurrency || s.Auth.BearerTokenFile != "/run/secrets/b-token" || s.Line != 5 {
			t.Errorf("source = %+v", s)
		}
	})
	t.Run("every problem with its line, secrets not echoed", func(t *testing.T) {
		_, err := search.ParseSources("p.yaml", []byte(`sources:
  - name: a
    kind: dimse
    url: http://x/
    issuer: A
  - name: b
    kind: fhir
    url: ftp://x
    match: fuzzy
    auth: {password: hunter2}
`))
		var ce *search.ConfigError
		if !errors.As(err, &ce) {
			t.Fatalf("err = %v", err)
		}
		msg := err.Error()
		for _, want := range []string{"p.yaml:3:11: kind dimse: not yet supported", "p.yaml:8:10: url:", "p.yaml:9:12: match", "p.yaml:10:12: auth.password"} {
			if !strings.Contains(msg, want) {
				t.Errorf("missing %q in\n%s", want, msg)
			}
		}
		if strings.Contains(msg, "hunter2") {
			t.Error("the secret is echoed")
		}
	})
}
