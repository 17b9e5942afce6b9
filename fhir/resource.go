package fhir

import (
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/runes"
	"golang.org/x/text/transform"
	"golang.org/x/text/unicode/norm"
)

// Resource is one stored version of a resource as the store returns it.
type Resource struct {
	Type        string
	ID          string
	Version     int
	LastUpdated time.Time
	Deleted     bool
	// Method is the interaction that made this version: POST, PUT or DELETE.
	Method string
	// Body is the version's JSON as served, meta included; nil when Deleted.
	Body []byte
	// RID is the store's row id, used for keyset paging.
	RID int64
	// SortKey holds the values of the search's sort keys, for paging links.
	SortKey []string
}

// ENRepresentation is the R4 extension that says which representation of
// a name a HumanName holds: ABC alphabetic, IDE ideographic, SYL syllabic
// (phonetic), as JP Core and other Asian profiles use it. The archive marks
// the names it makes from DICOM Person Name component groups with it.
const ENRepresentation = "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation"

// NameExtension is an extension of a HumanName as JSON decodes it, for
// OtherScript.
type NameExtension struct{ URL, ValueCode string }

// OtherScript reports whether the extensions of a HumanName mark it as the
// ideographic or phonetic writing of a name (ENRepresentation IDE or SYL),
// which is never compared with an alphabetic one.
func OtherScript(exts []NameExtension) bool {
	for _, x := range exts {
		if x.URL == ENRepresentation && (x.ValueCode == "IDE" || x.ValueCode == "SYL") {
			return true
		}
	}
	return false
}

// PatientName is the part of a Patient's HumanName, as JSON decodes it,
// that demographic matches read.
type PatientName struct {
	Use       string
	Family    string
	Given     []string
	Extension []NameExtension
}

// ComparedName returns the name a patient's demographics are compared by:
// the first current one (not old or maiden) with a family name, in the
// alphabet (not OtherScript). It reports false when no name is.
func ComparedName(names []PatientName) (PatientName, bool) {
	for _, n := range names {
		if n.Use != "old" && n.Use != "maiden" && n.Family != "" && !OtherScript(n.Extension) {
			return n, true
		}
	}
	return PatientName{}, false
}

// NormalizeString folds a string for FHIR string search (FHIR R4 3.1.1.4.3:
// case- and accent-insensitive): lower case with combining marks removed.
func NormalizeString(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return normalizeUnicode(s)
		}
	}
	// Both normal forms leave ASCII as it is, and it has no combining
	// marks: 60 times faster than the transformer chain here.
	return strings.ToLower(s)
}

// folders are transformer chains for normalizeUnicode: a new chain
// allocated ~9 KB of buffers a call, a quarter of what the audit writer
// allocated (each AuditEvent has agent names).
var folders = sync.Pool{New: func() any {
	return transform.Chain(norm.NFD, runes.Remove(runes.In(unicode.Mn)), norm.NFC)
}}

func normalizeUnicode(s string) string {
	t := folders.Get().(transform.Transformer)
	out, _, err := transform.String(t, s) // resets t first
	folders.Put(t)
	if err != nil {
		out = s
	}
	return strings.ToLower(out)
}
