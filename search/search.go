// Package search finds a patient's prior studies across the remote sources
// of the network (DICOMweb archives, FHIR servers, peer Priorflow nodes),
// checks every study's identity, applies a prefetch rule's selection,
// compares the result with the local index and indexes what it found as
// remote ImagingStudy resources. Sources are adapters named after their
// technology (search/dicomweb, search/fhirsource); the Searcher fans a job
// out to them.
package search

import (
	"context"
	"errors"
	"time"
)

// Source is one remote place that holds studies. An implementation asks the
// source in its own protocol (QIDO-RS, FHIR search, later DIMSE C-FIND,
// PS3.4 C.4.1) and reports every study as the source describes it; the
// Searcher decides what to trust.
type Source interface {
	// Describe names the source and its patient-identity domain. It never
	// carries secrets.
	Describe() SourceInfo
	// FindStudies returns the studies of the patient the query names.
	// A source that cannot answer returns an error wrapping ErrUnavailable
	// (worth a retry) or ErrBadResponse (a malformed answer).
	FindStudies(ctx context.Context, q PatientQuery) ([]RemoteStudy, error)
}

// SourceInfo describes a source.
type SourceInfo struct {
	Name string
	Kind Kind
	// URL is the source's base address, without credentials.
	URL string
	// Issuer is the assigning authority of the source's patient IDs
	// (IssuerOfPatientID, PS3.3 C.7.1.1).
	Issuer string
	Match  Match
	Mode   Mode
}

// Kind is the technology of a source.
type Kind string

// Source kinds.
const (
	KindDICOMweb  Kind = "dicomweb"
	KindFHIR      Kind = "fhir"
	KindPriorflow Kind = "priorflow"
	KindDIMSE     Kind = "dimse"
)

// Match says how a patient is found at a source.
type Match string

// Patient matching modes.
const (
	// MatchIdentifier: by an identifier in the source's issuer domain.
	MatchIdentifier Match = "identifier"
	// MatchDemographics: by normalized name, birth date and sex; a study is
	// accepted only when exactly one distinct patient matches.
	MatchDemographics Match = "demographics"
)

// Mode says what happens to studies a source holds.
type Mode string

// Source modes.
const (
	// ModeImport: selected studies are retrieved into the local archive.
	ModeImport Mode = "import"
	// ModeRemoteView: studies are indexed with the remote Endpoint only.
	ModeRemoteView Mode = "remote-view"
)

// Errors a Source reports (wrapped).
var (
	// ErrUnavailable: the source did not answer in time, refused, or
	// failed on its side (5xx); the request may be retried.
	ErrUnavailable = errors.New("source unavailable")
	// ErrBadResponse: the source answered something that cannot be read
	// (invalid or truncated JSON, wrong content). Retried too: a truncated
	// answer is often a transient failure.
	ErrBadResponse = errors.New("bad response from source")
	// ErrRejected: the source refused the request (4xx other than 408/429);
	// retrying does not help.
	ErrRejected = errors.New("request rejected by source")
	// ErrCircuitOpen: the source failed repeatedly and is not asked until
	// its breaker lets a trial request through.
	ErrCircuitOpen = errors.New("circuit open")
)

// PatientQuery is what a source is asked: one patient, by identifier in
// the source's domain or by demographics, and optional study filters a
// source may apply (the Searcher filters again).
type PatientQuery struct {
	// PatientID and Issuer, for MatchIdentifier.
	PatientID, Issuer string
	// Demographics, for MatchDemographics.
	Demographics *Demographics
	// Since bounds StudyDate from below; zero means no bound.
	Since time.Time
	// Modalities keeps studies with a series of any of them; empty is any
	// (ModalitiesInStudy, PS3.4 C.6.2.1.2).
	Modalities []string
	// WithSeries asks for series detail (modality, body part, instance
	// counts), needed when body region decides relevance and for a
	// missing-only retrieval.
	WithSeries bool
}

// Demographics identify a patient without an identifier.
type Demographics struct {
	Family    string
	Given     []string
	BirthDate string // YYYY-MM-DD
	Sex       string // FHIR administrative-gender: male | female | other | unknown
}

// PatientIdentity is a patient as a source reports it.
type PatientIdentity struct {
	ID, Issuer string
	// Name as reported: a DICOM PN ("FAMILY^GIVEN") or "Family, Given".
	Family    string
	Given     []string
	BirthDate string // YYYY-MM-DD, or "" when unknown
	Sex       string // male | female | other | unknown | ""
	// Ref is the patient's resource at a FHIR source ("Patient/123").
	Ref string
}

// Key identifies a patient within the network: issuer and ID.
func (p PatientIdentity) Key() string { return p.Issuer + "|" + p.ID }

// RemoteStudy is one study as a source reports it.
type RemoteStudy struct {
	StudyInstanceUID string
	Patient          PatientIdentity
	// Date is the study date (and time when known), zero when unknown.
	Date              time.Time
	ModalitiesInStudy []string
	BodyParts         []string // BodyPartExamined of the series, when known
	Description       string
	AccessionNumber   string
	NumberOfSeries    int
	NumberOfInstances int
	// Series detail, when the source was asked for it or gives it anyway.
	Series []RemoteSeries
	// RetrieveBase is the WADO-RS root the study can be retrieved from
	// (PS3.18 10.4); RetrieveURL the study's own URL when reported.
	RetrieveBase, RetrieveURL string
	// Source is the name of the source that reported the study.
	Source string
}

// RemoteSeries is one series of a RemoteStudy.
type RemoteSeries struct {
	SeriesInstanceUID string
	Modality          string
	BodyPartExamined  string
	Description       string
	NumberOfInstances int
}
