package patientid

import (
	"fmt"
	"net/url"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/priorflow/priorflow/internal/configsection"
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
	data, err := configsection.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load identifiers: %w", err)
	}
	return Parse(path, data)
}

// Parse reads the identifiers: section of a Priorflow YAML config; other
// top-level keys belong to other packages and are ignored. name labels
// errors, which give the line of each problem.
func Parse(name string, data []byte) (*Systems, error) {
	sec, err := configsection.Read(name, data, "identifiers", "a mapping with authorities:, facilities: and withoutAuthority:")
	if err != nil {
		return nil, err
	}
	s := &Systems{}
	system := func(v string) string {
		if !absoluteURI(v) {
			return fmt.Sprintf("system %q is not an absolute URI (urn:oid:…, https://…)", v)
		}
		return ""
	}
	sec.Fields(func(k, v *yaml.Node) {
		switch k.Value {
		case "authorities":
			s.Authorities = sec.Table(v, "authorities: want a mapping of authority to identifier system",
				func(name string) string { return fmt.Sprintf("authority %q", name) }, system)
		case "facilities":
			s.Facilities = sec.Table(v, "facilities: want a mapping of facility to identifier system",
				func(name string) string { return fmt.Sprintf("facility %q", name) }, system)
		case "withoutAuthority":
			if v.Kind != yaml.ScalarNode || !absoluteURI(v.Value) {
				sec.Problem(v, "withoutAuthority: %q is not an absolute URI", v.Value)
				return
			}
			s.WithoutAuthority = v.Value
		default:
			sec.Problem(k, "unknown key %q (authorities, facilities, withoutAuthority)", k.Value)
		}
	})
	if err := sec.Err(); err != nil {
		return nil, err
	}
	return s, nil
}

func absoluteURI(s string) bool {
	u, err := url.Parse(s)
	return err == nil && u.Scheme != "" && !strings.ContainsAny(s, " \t\r\n") && (u.Opaque != "" || u.Host != "")
}
