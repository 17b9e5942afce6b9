package hl7v2

import (
	"strings"
	"testing"
	"time"

	"github.com/priorflow/priorflow/internal/patientid"
)

// The site's tables of PRIORFLOW_CONFIG reach the mapping: a local
// procedure code's modality, a local coding system, and the system of a
// facility's identifiers sent without an assigning authority. None of them
// could be set before: MapOptions had the fields, nothing filled them.
func TestTables_MapOptions(t *testing.T) {
	cfg := `
identifiers:
  facilities:
    NORTH-RIS: urn:oid:1.2.840.99999.4
hl7:
  codeSystems:
    L: urn:oid:1.2.840.99999.3
  modalityPrefixes:
    RAD-US: US
    RAD: CR
`
	tables, err := ParseTables("p.yaml", []byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	ids, err := patientid.Parse("p.yaml", []byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	msg := wire("MSH|^~\\&|RIS|NORTH-RIS|PF|PF|20240305120000||ORM^O01|T1|P|2.3",
		"PID|1||123456^^^^MR||DOE^JANE", "ORC|NW|A1", "OBR|1|A1||RAD-US12^ABDOMEN^L")
	for _, c := range []struct {
		name             string
		opts             MapOptions
		modality, system string
		procSystem       string
	}{
		{"defaults", MapOptions{}, "", "", "urn:priorflow:codesystem:L"},
		{"site tables", tables.MapOptions(time.UTC, ids), "US", "urn:oid:1.2.840.99999.4", "urn:oid:1.2.840.99999.3"},
	} {
		ev, err := ToCareEvent(mustParse(t, msg), c.opts)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if ev.Modality != c.modality || ev.Patient.Identifiers[0].System != c.system || ev.Procedures[0].System != c.procSystem {
			t.Errorf("%s: modality %q, identifier system %q, procedure system %q; want %q, %q, %q", c.name,
				ev.Modality, ev.Patient.Identifiers[0].System, ev.Procedures[0].System, c.modality, c.system, c.procSystem)
		}
	}
}

func TestParseTables_Errors(t *testing.T) {
	for _, c := range []struct{ yaml, want string }{
		{"hl7: [x]\n", "p.yaml:1:6: hl7: want a mapping"},
		{"hl7:\n  modalityPrefixes:\n    CT: CAT\n", `p.yaml:3:9: hl7: modalityPrefixes: "CT": "CAT" is not a DICOM modality`},
		{"hl7:\n  codeSystems:\n    L: local codes\n", `hl7: codeSystems: "L": "local codes" is not an absolute URI`},
		{"hl7:\n  codeSystems:\n    L: urn:a\n    L: urn:b\n", `p.yaml:4:5: hl7: codeSystems: "L" is listed twice`},
		{"hl7:\n  modalities: {}\n", `p.yaml:2:3: hl7: unknown key "modalities"`},
	} {
		if _, err := ParseTables("p.yaml", []byte(c.yaml)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want one containing %q", c.yaml, err, c.want)
		}
	}
	if tb, err := ParseTables("p.yaml", []byte("rules: []\n")); err != nil || tb.CodeSystems != nil {
		t.Errorf("no section: %+v, %v", tb, err)
	}
}
