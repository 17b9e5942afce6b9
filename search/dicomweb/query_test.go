package dicomweb

import (
	"net/url"
	"testing"
)

func TestEncodeQuery(t *testing.T) {
	v := url.Values{
		"PatientName":       {"VAN DER BERG*"},
		"PatientID":         {"B 900"},
		"IssuerOfPatientID": {"urn:oid:1.2.3"},
		"StudyDate":         {"20200101-"},
		"includefield":      {"00100030"},
	}
	want := "IssuerOfPatientID=urn:oid:1.2.3&PatientID=B?900&PatientName=VAN?DER?BERG*&StudyDate=20200101-&includefield=00100030"
	if got := encodeQuery(v); got != want {
		t.Errorf("encodeQuery = %s, want %s", got, want)
	}
	for in, want := range map[string]string{
		"MÜLLER*":      "M*LLER*",
		"ŁÓDŹ^ANNA":    "*D*?ANNA",
		"O'NEIL*":      "O?NEIL*",
		"A&B=C%D#E+F":  "A?B?C?D?E?F",
		"D?E^JANE":     "D?E?JANE",
		"张伟":           "*",
		"plain-1.2_~*": "plain-1.2_~*",
	} {
		if got := matchingValue(in); got != want {
			t.Errorf("matchingValue(%q) = %q, want %q", in, got, want)
		}
	}
}
