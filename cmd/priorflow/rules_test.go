package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/priorflow/priorflow/triggers/hl7v2"
)

func TestRulesExplain_HL7MessageAgainstRules(t *testing.T) {
	var out, errw bytes.Buffer
	err := run(context.Background(), []string{"rules", "explain", "-config", "testdata/rules.yaml", "-now", "2024-01-01T00:00:00Z",
		"../../triggers/hl7v2/testdata/SIU-S12-01.hl7"}, &out, &errw, func(string) string { return "" })
	if err != nil {
		t.Fatalf("explain: %v\n%s", err, errw.String())
	}
	got := out.String()
	for _, want := range []string{"priors-before-visits", "ct-orders-only", "appointment-booked"} {
		if !strings.Contains(got, want) {
			t.Errorf("explain output lacks %q:\n%s", want, got)
		}
	}
}

// The site's hl7: and identifiers: sections of the config are read as the
// intake reads them: a local procedure code's modality, an authority's
// system.
func TestRulesExplain_SiteTables(t *testing.T) {
	rules, err := os.ReadFile("testdata/rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "priorflow.yaml")
	site := "\nhl7:\n  modalityPrefixes:\n    \"7616\": ES\nidentifiers:\n  authorities:\n    test1: urn:oid:1.2.840.99999.7\n"
	if err := os.WriteFile(cfg, append(rules, site...), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errw bytes.Buffer
	err = run(context.Background(), []string{"rules", "explain", "-config", cfg, "-now", "2024-01-01T00:00:00Z",
		"../../triggers/hl7v2/testdata/SIU-S12-01.hl7"}, &out, &errw, func(string) string { return "" })
	if err != nil {
		t.Fatalf("explain: %v\n%s", err, errw.String())
	}
	for _, want := range []string{"patient urn:oid:1.2.840.99999.7|PATID1234", "modality ES"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("explain output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestRulesExplain_Usage(t *testing.T) {
	var out, errw bytes.Buffer
	getenv := func(string) string { return "" }
	for _, args := range [][]string{{"rules"}, {"rules", "explain"}, {"rules", "explain", "x.json"}} {
		err := run(context.Background(), args, &out, &errw, getenv)
		if code := exitCode(err, &errw); code != exitUsage {
			t.Errorf("%v: exit %d, want %d", args, code, exitUsage)
		}
	}
	err := run(context.Background(), []string{"rules", "explain", "-config", "testdata/nope.yaml", "x.json"}, &out, &errw, getenv)
	if code := exitCode(err, &errw); code != exitFailure {
		t.Errorf("missing rules file: exit %d, want %d", code, exitFailure)
	}
}

// TestRulesExplain_Charset: a message in 8859/1 that does not say so is
// refused unless -charset names the set, as the intake does with
// PRIORFLOW_HL7_CHARSET.
func TestRulesExplain_Charset(t *testing.T) {
	sample, err := os.ReadFile("../../triggers/hl7v2/testdata/SIU-S12-01.hl7")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "latin1.hl7")
	if err := os.WriteFile(file, bytes.Replace(sample, []byte("EVERYMAN"), []byte("\xc9VERYMAN"), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(sample, []byte("EVERYMAN")) {
		t.Fatal("the sample no longer names EVERYMAN")
	}
	getenv := func(string) string { return "" }
	base := []string{"rules", "explain", "-config", "testdata/rules.yaml", "-now", "2024-01-01T00:00:00Z"}
	var out, errw bytes.Buffer
	err = run(context.Background(), append(base, file), &out, &errw, getenv)
	if !errors.Is(err, hl7v2.ErrNotText) {
		t.Errorf("without -charset: %v, want ErrNotText", err)
	}
	out.Reset()
	if err := run(context.Background(), append(base, "-charset", "8859/1", file), &out, &errw, getenv); err != nil {
		t.Fatalf("-charset 8859/1: %v\n%s", err, errw.String())
	}
	if !strings.Contains(out.String(), "appointment-booked") {
		t.Errorf("-charset 8859/1: output lacks the event:\n%s", out.String())
	}
	err = run(context.Background(), append(base, "-charset", "latin1", file), &out, &errw, getenv)
	if code := exitCode(err, &errw); code != exitUsage {
		t.Errorf("-charset latin1: exit %d, want %d", code, exitUsage)
	}
}
