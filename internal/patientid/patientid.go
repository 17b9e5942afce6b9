// Package patientid holds the one rule that names the identifier system of
// a patient ID after its assigning authority, so that one authority gives
// one system whichever door the ID comes through: CX-4 of an HL7 v2 PID-3
// (triggers/hl7v2), IssuerOfPatientID of a DICOM object (archive), the
// issuer of a remote source (search). Were they to differ, a Patient the
// archive made would not be found for the care events of the same patient.
// It is internal because those three must agree and none should import
// another for it. The site's table is the identifiers: section of
// PRIORFLOW_CONFIG (Parse).
package patientid

import (
	"net/url"
	"regexp"
	"strings"
)

// issuerPrefix is the system of an authority known by its name alone.
const issuerPrefix = "urn:priorflow:issuer:"

// builtin are assigning authorities of HL7 table 0363 with a well-known
// FHIR identifier system.
var builtin = map[string]string{
	"USSSA": "http://hl7.org/fhir/sid/us-ssn",
	"NPI":   "http://hl7.org/fhir/sid/us-npi",
}

var oid = regexp.MustCompile(`^[0-2](\.(0|[1-9][0-9]*))+$`)

// ForIssuer returns the identifier system of an assigning authority given
// as HL7 v2 gives it in CX-4 (HD: namespace, universal ID and its type) and
// DICOM in IssuerOfPatientID with its Issuer of Patient ID Qualifiers
// Sequence (Universal Entity ID and its type): the universal ID when it is
// an ISO OID (urn:oid:), a URI or a UUID (urn:uuid:), else System of the
// namespace, or of a universal ID of another type. It returns "" when
// there is no authority at all.
func ForIssuer(namespace, universalID, universalType string, table map[string]string) string {
	switch strings.ToUpper(universalType) {
	case "ISO":
		if oid.MatchString(universalID) {
			return "urn:oid:" + universalID
		}
	case "URI", "URL":
		if universalID != "" {
			return universalID
		}
	case "UUID", "GUID":
		if universalID != "" {
			return "urn:uuid:" + strings.ToLower(universalID)
		}
	}
	if namespace != "" {
		return System(namespace, table)
	}
	return System(universalID, table)
}

// System returns the identifier system of assigning authority authority
// (a namespace such as HOSP-B, an OID or a URI): the site's entry in
// table, else the built-in one (USSSA, NPI), else urn:oid: for an OID, the
// URI itself, or urn:priorflow:issuer: and the name. It returns "" for "".
func System(authority string, table map[string]string) string {
	switch {
	case authority == "":
		return ""
	case table[authority] != "":
		return table[authority]
	case builtin[authority] != "":
		return builtin[authority]
	case oid.MatchString(authority):
		return "urn:oid:" + authority
	case strings.Contains(authority, "://") || strings.HasPrefix(authority, "urn:"):
		return authority
	}
	return issuerPrefix + url.PathEscape(authority)
}
