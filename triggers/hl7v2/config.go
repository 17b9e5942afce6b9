package hl7v2

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

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
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return &Tables{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load hl7 tables: %w", err)
	}
	return ParseTables(path, data)
}

// ParseTables reads the hl7: section of a Priorflow YAML config; other
// top-level keys belong to other packages and are ignored. name labels
// errors, which give the line of each problem.
func ParseTables(name string, data []byte) (*Tables, error) {
	t := &Tables{}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return t, nil
	}
	var problems []string
	bad := func(n *yaml.Node, format string, args ...any) {
		problems = append(problems, fmt.Sprintf("%s:%d:%d: hl7: %s", name, n.Line, n.Column, fmt.Sprintf(format, args...)))
	}
	// table reads a mapping of names to values that check accepts.
	table := func(n *yaml.Node, key string, check func(string) string) map[string]string {
		if n.Kind != yaml.MappingNode {
			bad(n, "%s: want a mapping", key)
			return nil
		}
		out := map[string]string{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			switch {
			case k.Value == "" || strings.TrimSpace(k.Value) != k.Value:
				bad(k, "%s: %q: a name without surrounding spaces is wanted", key, k.Value)
			case out[k.Value] != "":
				bad(k, "%s: %q is listed twice", key, k.Value)
			case v.Kind != yaml.ScalarNode:
				bad(v, "%s: %q: want a single value", key, k.Value)
			default:
				if why := check(v.Value); why != "" {
					bad(v, "%s: %q: %s", key, k.Value, why)
					continue
				}
				out[k.Value] = v.Value
			}
		}
		return out
	}
	root := doc.Content[0]
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value != "hl7" {
			continue
		}
		sec := root.Content[i+1]
		if sec.Kind != yaml.MappingNode {
			bad(sec, "want a mapping with codeSystems: and modalityPrefixes:")
			continue
		}
		for j := 0; j+1 < len(sec.Content); j += 2 {
			k, v := sec.Content[j], sec.Content[j+1]
			switch k.Value {
			case "codeSystems":
				t.CodeSystems = table(v, k.Value, func(s string) string {
					if u, err := url.Parse(s); err != nil || u.Scheme == "" || strings.ContainsAny(s, " \t") {
						return fmt.Sprintf("%q is not an absolute URI", s)
					}
					return ""
				})
			case "modalityPrefixes":
				t.ModalityPrefixes = table(v, k.Value, func(s string) string {
					if !dicomModalities[s] {
						return fmt.Sprintf("%q is not a DICOM modality of an acquisition (CT, MR, US …)", s)
					}
					return ""
				})
			default:
				bad(k, "unknown key %q (codeSystems, modalityPrefixes)", k.Value)
			}
		}
	}
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "\n"))
	}
	return t, nil
}
