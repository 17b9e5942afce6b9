package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/priorflow/priorflow/internal/orthanctest"
)

func TestSourcesCheck(t *testing.T) {
	t.Parallel()
	o := orthanctest.Start(t)
	cfg := filepath.Join(t.TempDir(), "priorflow.yaml")
	yaml := fmt.Sprintf(`sources:
  - name: pacs
    kind: dimse
    url: dicom://127.0.0.1:%[1]d
    calledAETitle: %[2]s
    callingAETitle: %[3]s
    issuer: HOSP-B
  - name: pacs-by-move
    kind: dimse
    url: dicom://127.0.0.1:%[1]d
    calledAETitle: %[2]s
    callingAETitle: %[3]s
    retrieveMethod: c-move
    issuer: HOSP-B
  - name: archive
    kind: dicomweb
    url: %[4]s/dicom-web
    issuer: HOSP-B
  - name: pacs-unknown-to-it
    kind: dimse
    url: dicom://127.0.0.1:%[1]d
    calledAETitle: %[2]s
    callingAETitle: STRANGER
    issuer: HOSP-B
  - name: pacs-wrong-title
    kind: dimse
    url: dicom://127.0.0.1:%[1]d
    calledAETitle: NOT-THE-PACS
    issuer: HOSP-B
`, o.Port, o.AET, orthanctest.SCUAE, o.URL)
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}

	t.Run("the sources Orthanc answers", func(t *testing.T) {
		r := runCLI(t, map[string]string{"PRIORFLOW_CONFIG": cfg}, "sources", "check", "pacs", "archive", "pacs-by-move")
		if r.code != exitOK {
			t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		for _, want := range []string{`(?m)^pacs +dimse +ok +C-ECHO, C-FIND; Study Root FIND and GET accepted`,
			`(?m)^archive +dicomweb +ok +QIDO-RS answered`, `(?m)^pacs-by-move +dimse +ok +C-ECHO, C-FIND; Study Root FIND and MOVE accepted`} {
			if !regexp.MustCompile(want).MatchString(r.stdout) {
				t.Errorf("output lacks %s:\n%s", want, r.stdout)
			}
		}
	})

	t.Run("a calling AE title the PACS does not know, a called one it is not", func(t *testing.T) {
		r := runCLI(t, nil, "sources", "check", "-config", cfg)
		if r.code != exitFailure {
			t.Fatalf("exit %d, want %d\n%s%s", r.code, exitFailure, r.stdout, r.stderr)
		}
		for _, want := range []string{`(?m)^pacs +dimse +ok`, `(?m)^pacs-unknown-to-it +dimse +FAILED +.*aborted by the peer \(does the PACS know STRANGER`,
			`(?m)^pacs-wrong-title +dimse +FAILED +.*called AE title not recognized`, `(?m)^2 of 5 sources failed$`} {
			if !regexp.MustCompile(want).MatchString(r.stdout) {
				t.Errorf("output lacks %s:\n%s", want, r.stdout)
			}
		}
	})

	t.Run("a source not in the config", func(t *testing.T) {
		if r := runCLI(t, nil, "sources", "check", "-config", cfg, "nowhere"); r.code != exitUsage {
			t.Errorf("exit %d, want %d", r.code, exitUsage)
		}
	})
}
