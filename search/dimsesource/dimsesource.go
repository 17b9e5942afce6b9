// Package dimsesource is a search.Source over DIMSE C-FIND (DICOM PS3.4
// C.4.1, Study Root): it asks a PACS for a patient's studies by PatientID
// and IssuerOfPatientID (or by name and birth date) and StudyDate range,
// and for their series when body part or instance counts matter, on one
// association per search. The studies are retrieved with C-GET by
// retrieve.
package dimsesource

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/priorflow/priorflow/archive/dicomjson"
	"github.com/priorflow/priorflow/dimse"
	"github.com/priorflow/priorflow/search"
	"github.com/priorflow/priorflow/search/dicomweb"
)

// MaxStudies bounds the studies of one search: a patient with more is cut,
// the C-FIND canceled, and the search says so in its error.
const MaxStudies = 5000

// Source is a DIMSE peer.
type Source struct {
	info   search.SourceInfo
	client *dimse.Client
}

// New returns a source for the peer of client; info.URL is its address as
// configured (dicom://host:port).
func New(info search.SourceInfo, client *dimse.Client) (*Source, error) {
	if info.Name == "" || info.URL == "" || client == nil || client.Addr == "" {
		return nil, errors.New("dimse source: name, URL and client are required")
	}
	return &Source{info: info, client: client}, nil
}

// NewClient returns the DIMSE client of a source's config: its address,
// AE titles, and DICOM TLS (PS3.15 B.1) when auth.mTLS is given. The
// search and the retrieval share it; the query timeout is its idle
// timeout, which the retrieval replaces with its own.
func NewClient(c *search.SourceConfig) (*dimse.Client, error) {
	tlsCfg, err := search.TLSConfig(c)
	if err != nil {
		return nil, err
	}
	dc := &dimse.Client{Addr: strings.TrimPrefix(c.URL, "dicom://"),
		Config: dimse.Config{CallingAE: c.CallingAETitle, CalledAE: c.CalledAETitle, IdleTimeout: c.Timeout}}
	if tlsCfg != nil {
		dc.Config.Dial = (&tls.Dialer{Config: tlsCfg}).DialContext
	}
	return dc, nil
}

// Describe implements search.Source.
func (s *Source) Describe() search.SourceInfo { return s.info }

// FindStudies implements search.Source.
func (s *Source) FindStudies(ctx context.Context, q search.PatientQuery) ([]search.RemoteStudy, error) {
	studyQuery, err := studyIdentifier(q)
	if err != nil {
		return nil, fmt.Errorf("dimse %s: %w", s.info.Name, err)
	}
	var out []search.RemoteStudy
	err = s.client.WithFind(ctx, dimse.StudyRootFind, func(a *dimse.Association) error {
		err := a.Find(dimse.StudyRootFind, studyQuery, func(ds dicom.Dataset) error {
			if len(out) == MaxStudies {
				return fmt.Errorf("%w: more than %d studies", search.ErrBadResponse, MaxStudies)
			}
			o, err := object(ds)
			if err != nil {
				return err
			}
			st, err := dicomweb.StudyFromAttributes(o)
			if err != nil {
				return err
			}
			st.RetrieveBase, st.Source = s.info.URL, s.info.Name
			out = append(out, st)
			return nil
		})
		if err != nil || !q.WithSeries {
			return err
		}
		for i := range out {
			if err := series(a, &out[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("dimse %s: %w", s.info.Name, classify(err))
	}
	return out, nil
}

// Study-level return keys (PS3.4 C.6.2.1.2): the attributes a RemoteStudy
// is made of and the patient's, to re-check identity.
var studyKeys = []dimse.Attribute{
	{Tag: tag.StudyDate, VR: "DA"},
	{Tag: tag.StudyTime, VR: "TM"},
	{Tag: tag.AccessionNumber, VR: "SH"},
	{Tag: tag.ModalitiesInStudy, VR: "CS"},
	{Tag: tag.StudyDescription, VR: "LO"},
	{Tag: tag.PatientName, VR: "PN"},
	{Tag: tag.PatientID, VR: "LO"},
	{Tag: tag.IssuerOfPatientID, VR: "LO"},
	{Tag: tag.PatientBirthDate, VR: "DA"},
	{Tag: tag.PatientSex, VR: "CS"},
	{Tag: tag.StudyInstanceUID, VR: "UI"},
	{Tag: tag.NumberOfStudyRelatedSeries, VR: "IS"},
	{Tag: tag.NumberOfStudyRelatedInstances, VR: "IS"},
	{Tag: tag.TimezoneOffsetFromUTC, VR: "SH"},
}

// utf8Charset asks the SCP to answer in UTF-8 (PS3.4 C.4.1.1.3.2): in a
// set such as Latin-1 a name such as NGUYỄN cannot be written whole, and
// the identity check then compares what is left. An SCP may answer in
// another set all the same (Orthanc 1.10 answers in its DefaultEncoding
// and drops what it cannot hold); the answer is read in whichever set it
// declares. The matching values themselves are ASCII.
var utf8Charset = dimse.Attribute{Tag: tag.SpecificCharacterSet, VR: "CS", Value: "ISO_IR 192"}

// studyIdentifier is the C-FIND identifier of q at STUDY level.
func studyIdentifier(q search.PatientQuery) (dimse.Identifier, error) {
	id := dimse.Identifier{utf8Charset, {Tag: tag.QueryRetrieveLevel, VR: "CS", Value: "STUDY"}}
	set := map[tag.Tag]string{}
	switch {
	case q.PatientID != "":
		set[tag.PatientID] = matchingValue(q.PatientID)
		if q.Issuer != "" {
			set[tag.IssuerOfPatientID] = matchingValue(q.Issuer)
		}
	case q.Demographics != nil && q.Demographics.Family != "":
		// Family name prefix and birth date; the Searcher checks given
		// names and sex itself (PS3.4 C.2.2.2.4 wildcard matching).
		set[tag.PatientName] = matchingValue(strings.ToUpper(q.Demographics.Family)) + "*"
		if bd := strings.ReplaceAll(q.Demographics.BirthDate, "-", ""); len(bd) == 8 {
			set[tag.PatientBirthDate] = bd
		}
	default:
		return nil, fmt.Errorf("%w: no patient identifier or family name", search.ErrRejected)
	}
	if !q.Since.IsZero() {
		set[tag.StudyDate] = q.Since.Format("20060102") + "-"
	}
	if len(q.Modalities) == 1 {
		// One value only: list matching of ModalitiesInStudy is not
		// supported by every SCP; the Searcher filters groups itself.
		set[tag.ModalitiesInStudy] = matchingValue(q.Modalities[0])
	}
	for _, k := range studyKeys {
		k.Value = set[k.Tag]
		id = append(id, k)
	}
	return id, nil
}

// series asks for the series of st (SERIES level) on the same association.
func series(a *dimse.Association, st *search.RemoteStudy) error {
	q := dimse.Identifier{
		utf8Charset,
		{Tag: tag.QueryRetrieveLevel, VR: "CS", Value: "SERIES"},
		{Tag: tag.StudyInstanceUID, VR: "UI", Value: st.StudyInstanceUID},
		{Tag: tag.SeriesInstanceUID, VR: "UI"},
		{Tag: tag.Modality, VR: "CS"},
		{Tag: tag.BodyPartExamined, VR: "CS"},
		{Tag: tag.SeriesDescription, VR: "LO"},
		{Tag: tag.NumberOfSeriesRelatedInstances, VR: "IS"},
	}
	var all []search.RemoteSeries
	err := a.Find(dimse.StudyRootFind, q, func(ds dicom.Dataset) error {
		if len(all) == MaxStudies {
			return fmt.Errorf("%w: more than %d series in a study", search.ErrBadResponse, MaxStudies)
		}
		o, err := object(ds)
		if err != nil {
			return err
		}
		all = append(all, dicomweb.SeriesFromAttributes(o))
		return nil
	})
	if err != nil {
		return err
	}
	dicomweb.SetSeries(st, all)
	return nil
}

// object turns a C-FIND identifier into the DICOM JSON model the QIDO-RS
// source reads, so that both read attributes by one set of rules.
func object(ds dicom.Dataset) (dicomjson.Object, error) {
	b, err := dicomjson.Marshal(ds, dicomjson.Options{})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", search.ErrBadResponse, err)
	}
	var o dicomjson.Object
	if err := json.Unmarshal(b, &o); err != nil {
		return nil, fmt.Errorf("%w: %v", search.ErrBadResponse, err)
	}
	return o, nil
}

// matchingValue writes a value for C-FIND matching (search.MatchingValue):
// a backslash, which would split the value in two, and control characters
// become "?".
func matchingValue(s string) string {
	return search.MatchingValue(s, func(r rune) bool { return r != '\\' && r >= 0x20 })
}

// classify maps a DIMSE failure to the search's error kinds: one that will
// recur (dimse.Permanent) has rejected the request, a peer that broke the
// protocol answered badly, and any other could not answer now.
func classify(err error) error {
	switch {
	case errors.Is(err, search.ErrBadResponse), errors.Is(err, search.ErrRejected):
		return err
	case dimse.Permanent(err):
		return fmt.Errorf("%w: %w", search.ErrRejected, err)
	case errors.Is(err, dimse.ErrProtocol):
		return fmt.Errorf("%w: %w", search.ErrBadResponse, err)
	}
	return fmt.Errorf("%w: %w", search.ErrUnavailable, err)
}
