package patientid

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Systems is the identifiers: section of PRIORFLOW_CONFIG:
//
//	identifiers:
//	  authorities:              # assigning authority → identifier system
//	    HOSP-A: urn:oid:1.2.840.99999.1
//	  facilities:               # HL7 v2 sending facility (MSH-4.1) → system of its PID-3 without CX-4
//	    NORTH-RIS: urn:oid:1.2.840.99999.4
//	  withoutAuthority: urn:oid:1.2.840.99999.1
//
// Authorities names the system of an assigning authority as HL7 v2 (CX-4.1)
// and DICOM (IssuerOfPatientID) spell it; Facilities the system of the
// identifiers an HL7 v2 sender sends without any authority; and
// WithoutAuthority that of patient IDs sent with none otherwise (DICOM
// objects without IssuerOfPatientID, PID-3 without CX-4 from a facility not
// in Facilities), "" for the callers' defaults.
type Systems struct {
	Authorities      map[string]string
	Facilities       map[string]string
	WithoutAuthority string
}

// Load reads the identifiers: section of the file at path; a file that
// does not exist is no section (the defaults).
func Load(path string) (*Systems, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return &Systems{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load identifiers: %w", err)
	}
	return Parse(path, data)
}

// Parse reads the identifiers: section of a Priorflow YAML config; other
// top-level keys belong to other packages and are ignored. name labels
// errors, which give the line of each problem.
func Parse(name string, data []byte) (*Systems, error) {
	s := &Systems{}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return s, nil
	}
	var problems []string
	bad := func(n *yaml.Node, format string, args ...any) {
		problems = append(problems, fmt.Sprintf("%s:%d:%d: identifiers: %s", name, n.Line, n.Column, fmt.Sprintf(format, args...)))
	}
	root := doc.Content[0]
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value != "identifiers" {
			continue
		}
		sec := root.Content[i+1]
		if sec.Kind != yaml.MappingNode {
			bad(sec, "want a mapping with authorities:, facilities: and withoutAuthority:")
			continue
		}
		for j := 0; j+1 < len(sec.Content); j += 2 {
			k, v := sec.Content[j], sec.Content[j+1]
			switch k.Value {
			case "authorities", "facilities":
				what := map[string]string{"authorities": "authority", "facilities": "facility"}[k.Value]
				if v.Kind != yaml.MappingNode {
					bad(v, "%s: want a mapping of %s to identifier system", k.Value, what)
					continue
				}
				m := map[string]string{}
				for a := 0; a+1 < len(v.Content); a += 2 {
					name, sys := v.Content[a], v.Content[a+1]
					switch {
					case strings.TrimSpace(name.Value) != name.Value || name.Value == "":
						bad(name, "%s %q: a name without surrounding spaces is wanted", what, name.Value)
					case m[name.Value] != "":
						bad(name, "%s %q is listed twice", what, name.Value)
					case sys.Kind != yaml.ScalarNode || !absoluteURI(sys.Value):
						bad(sys, "%s %q: system %q is not an absolute URI (urn:oid:…, https://…)", what, name.Value, sys.Value)
					default:
						m[name.Value] = sys.Value
					}
				}
				if k.Value == "authorities" {
					s.Authorities = m
				} else {
					s.Facilities = m
				}
			case "withoutAuthority":
				if v.Kind != yaml.ScalarNode || !absoluteURI(v.Value) {
					bad(v, "withoutAuthority: %q is not an absolute URI", v.Value)
					continue
				}
				s.WithoutAuthority = v.Value
			default:
				bad(k, "unknown key %q (authorities, facilities, withoutAuthority)", k.Value)
			}
		}
	}
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "\n"))
	}
	return s, nil
}

func absoluteURI(s string) bool {
	u, err := url.Parse(s)
	return err == nil && u.Scheme != "" && !strings.ContainsAny(s, " \t\r\n") && (u.Opaque != "" || u.Host != "")
}
