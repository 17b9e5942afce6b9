package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
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
