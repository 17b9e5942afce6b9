package patientid_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/priorflow/priorflow/internal/patientid"
)

func TestSystem(t *testing.T) {
	table := map[string]string{"HOSP-A": "urn:oid:1.2.840.99999.1", "USSSA": "urn:example:ssn"}
	for _, c := range []struct{ authority, want string }{
		{"", ""},
		{"HOSP-A", "urn:oid:1.2.840.99999.1"},
		{"HOSP-B", "urn:priorflow:issuer:HOSP-B"},
		{"A B/C", "urn:priorflow:issuer:A%20B%2FC"},
		{"1.2.840.10008", "urn:oid:1.2.840.10008"},
		{"1.02.3", "urn:priorflow:issuer:1.02.3"}, // not an OID: a leading zero
		{"urn:x:y", "urn:x:y"},
		{"https://id.example/mrn", "https://id.example/mrn"},
		{"NPI", "http://hl7.org/fhir/sid/us-npi"},
		{"USSSA", "urn:example:ssn"}, // the site's table first
	} {
		if got := patientid.System(c.authority, table); got != c.want {
			t.Errorf("System(%q) = %q, want %q", c.authority, got, c.want)
		}
	}
	if got := patientid.System("USSSA", nil); got != "http://hl7.org/fhir/sid/us-ssn" {
		t.Errorf("System(USSSA) without a table = %q, want the built-in us-ssn", got)
	}
}

func TestParse(t *testing.T) {
	good := `rules: []
identifiers:
  authorities:
    HOSP-A: urn:oid:1.2.840.99999.1
    NORTH: https://id.north.example/mrn
  facilities:
    NORTH-RIS: urn:oid:1.2.840.99999.4
  withoutAuthority: urn:oid:1.2.840.99999.1
sources: []
`
	s, err := patientid.Parse("p.yaml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if s.Authorities["HOSP-A"] != "urn:oid:1.2.840.99999.1" || s.Authorities["NORTH"] != "https://id.north.example/mrn" ||
		s.WithoutAuthority != "urn:oid:1.2.840.99999.1" || s.Facilities["NORTH-RIS"] != "urn:oid:1.2.840.99999.4" {
		t.Errorf("parsed %+v", s)
	}
	if s, err := patientid.Parse("p.yaml", []byte("rules: []\n")); err != nil || len(s.Authorities) != 0 || s.WithoutAuthority != "" {
		t.Errorf("no section: %+v, %v; want the defaults", s, err)
	}

	for _, c := range []struct{ name, yaml, want string }{
		{"not a mapping", "identifiers: [a]\n", "p.yaml:1:14: identifiers: want a mapping"},
		{"unknown key", "identifiers:\n  issuers: {}\n", "p.yaml:2:3: identifiers: unknown key \"issuers\""},
		{"relative system", "identifiers:\n  authorities:\n    HOSP-A: hosp-a\n", "p.yaml:3:13: identifiers: authority \"HOSP-A\": system \"hosp-a\" is not an absolute URI"},
		{"space in system", "identifiers:\n  authorities:\n    HOSP-A: urn:oid:1.2 3\n", "is not an absolute URI"},
		{"twice", "identifiers:\n  authorities:\n    A: urn:a:1\n    A: urn:a:2\n", "p.yaml:4:5: identifiers: authority \"A\" is listed twice"},
		{"padded name", "identifiers:\n  authorities:\n    \" A\": urn:a:1\n", "a name without surrounding spaces"},
		{"facility system", "identifiers:\n  facilities:\n    RIS: ris\n", "p.yaml:3:10: identifiers: facility \"RIS\": system \"ris\" is not an absolute URI"},
		{"withoutAuthority", "identifiers:\n  withoutAuthority: [x]\n", "p.yaml:2:21: identifiers: withoutAuthority"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := patientid.Parse("p.yaml", []byte(c.yaml))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want one containing %q", err, c.want)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	if s, err := patientid.Load(filepath.Join(dir, "missing.yaml")); err != nil || s.Authorities != nil {
		t.Errorf("missing file: %+v, %v; want the defaults", s, err)
	}
	p := filepath.Join(dir, "p.yaml")
	if err := os.WriteFile(p, []byte("identifiers:\n  authorities:\n    X: y\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := patientid.Load(p); err == nil || !strings.Contains(err.Error(), p+":3:") {
		t.Errorf("invalid file: %v, want an error naming the file and line", err)
	}
}
