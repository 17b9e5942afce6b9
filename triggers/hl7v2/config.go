package hl7v2

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/priorflow/priorflow/internal/configsection"
	"github.com/priorflow/priorflow/internal/patientid"
)

// Tables is the hl7: section of PRIORFLOW_CONFIG, the site's part of the
// mapping (MapOptions.CodeSystems and ModalityPrefixes):
//
//	hl7:
//	  codeSystems:          # coding system name (CWE-3) → URI
//	    L: urn:oid:1.2.840.99999.3
//	  modalityPrefixes:     # local procedure code prefix → DICOM modality
//	    CT: CT
//	    RAD-US: US
type Tables struct {
	CodeSystems      map[string]string
	ModalityPrefixes map[string]string
}

// MapOptions returns the mapping options of a site: its zone for times
// sent without an offset, its identifier systems (the identifiers: section)
// and these tables.
func (t *Tables) MapOptions(tz *time.Location, ids *patientid.Systems) MapOptions {
	return MapOptions{TimeZone: tz, AuthoritySystems: ids.Authorities, FacilitySystems: ids.Facilities,
		WithoutAuthoritySystem: ids.WithoutAuthority, CodeSystems: t.CodeSystems, ModalityPrefixes: t.ModalityPrefixes}
}

// LoadTables reads the hl7: section of the file at path; a file that does
// not exist is no section.
func LoadTables(path string) (*Tables, error) {
	data, err := configsection.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load hl7 tables: %w", err)
	}
	return ParseTables(path, data)
}

// ParseTables reads the hl7: section of a Priorflow YAML config; other
// top-level keys belong to other packages and are ignored. name labels
// errors, which give the line of each problem.
func ParseTables(name string, data []byte) (*Tables, error) {
	sec, err := configsection.Read(name, data, "hl7", "a mapping with codeSystems: and modalityPrefixes:")
	if err != nil {
		return nil, err
	}
	t := &Tables{}
	sec.Fields(func(k, v *yaml.Node) {
		label := func(name string) string { return fmt.Sprintf("%s: %q", k.Value, name) }
		switch k.Value {
		case "codeSystems":
			t.CodeSystems = sec.Table(v, "codeSystems: want a mapping", label, func(s string) string {
				if u, err := url.Parse(s); err != nil || u.Scheme == "" || strings.ContainsAny(s, " \t") {
					return fmt.Sprintf("%q is not an absolute URI", s)
				}
				return ""
			})
		case "modalityPrefixes":
			t.ModalityPrefixes = sec.Table(v, "modalityPrefixes: want a mapping", label, func(s string) string {
				if !dicomModalities[s] {
					return fmt.Sprintf("%q is not a DICOM modality of an acquisition (CT, MR, US …)", s)
				}
				return ""
			})
		default:
			sec.Problem(k, "unknown key %q (codeSystems, modalityPrefixes)", k.Value)
		}
	})
	if err := sec.Err(); err != nil {
		return nil, err
	}
	return t, nil
}
