// Package dicomweb is a search.Source over QIDO-RS (DICOM PS3.18 10.6): it
// asks a DICOMweb server for a patient's studies by PatientID and
// IssuerOfPatientID (or by name and birth date), StudyDate range and
// ModalitiesInStudy, and for their series when body part or instance
// counts matter. Results are paged with limit and offset (PS3.18 8.3.4.4).
package dicomweb

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/priorflow/priorflow/archive/dicomjson"
	"github.com/priorflow/priorflow/search"
)

// PageSize is the limit of one QIDO-RS request.
const PageSize = 100

// maxPages bounds the pages of one search (a patient with more than
// PageSize*maxPages studies is cut, and the search says so in its error).
const maxPages = 50

// Source is a DICOMweb server.
type Source struct {
	info search.SourceInfo
	http *http.Client
}

// New returns a source for the DICOMweb root info.URL.
func New(info search.SourceInfo, client *http.Client) (*Source, error) {
	if info.Name == "" || info.URL == "" || client == nil {
		return nil, errors.New("dicomweb source: name, URL and HTTP client are required")
	}
	info.URL = strings.TrimSuffix(info.URL, "/")
	return &Source{info: info, http: client}, nil
}

// Describe implements search.Source.
func (s *Source) Describe() search.SourceInfo { return s.info }

// Study-level return keys asked for beyond the defaults of PS3.18 Table
// 6.7.1-2: patient attributes to re-check identity. ModalitiesInStudy and
// the NumberOf… counts are returned by default and must not be named:
// some servers (Orthanc) then copy them from a stored file instead of
// computing them.
var studyFields = []tag.Tag{tag.PatientBirthDate, tag.PatientSex, tag.IssuerOfPatientID, tag.StudyDescription,
	tag.TimezoneOffsetFromUTC}

var seriesFields = []tag.Tag{tag.BodyPartExamined, tag.SeriesDescription}

// FindStudies implements search.Source.
func (s *Source) FindStudies(ctx context.Context, q search.PatientQuery) ([]search.RemoteStudy, error) {
	v := url.Values{}
	switch {
	case q.PatientID != "":
		v.Set("PatientID", q.PatientID)
		if q.Issuer != "" {
			v.Set("IssuerOfPatientID", q.Issuer)
		}
	case q.Demographics != nil && q.Demographics.Family != "":
		// Family name prefix and birth date; the Searcher checks given
		// names and sex itself (PS3.4 C.2.2.2.4 wildcard matching).
		v.Set("PatientName", strings.ToUpper(q.Demographics.Family)+"*")
		if bd := strings.ReplaceAll(q.Demographics.BirthDate, "-", ""); len(bd) == 8 {
			v.Set("PatientBirthDate", bd)
		}
	default:
		return nil, fmt.Errorf("dicomweb %s: %w: no patient identifier or family name", s.info.Name, search.ErrRejected)
	}
	if !q.Since.IsZero() {
		v.Set("StudyDate", q.Since.Format("20060102")+"-")
	}
	if len(q.Modalities) == 1 {
		// One value only: list matching of ModalitiesInStudy is not
		// supported by every server; the Searcher filters groups itself.
		v.Set("ModalitiesInStudy", q.Modalities[0])
	}
	for _, t := range studyFields {
		v.Add("includefield", dicomjson.Key(t))
	}
	var out []search.RemoteStudy
	for page := 0; ; page++ {
		if page == maxPages {
			return out, fmt.Errorf("dicomweb %s: %w: more than %d studies", s.info.Name, search.ErrBadResponse, PageSize*maxPages)
		}
		v.Set("limit", strconv.Itoa(PageSize))
		v.Set("offset", strconv.Itoa(page*PageSize))
		objs, err := s.qido(ctx, "/studies", v)
		if err != nil {
			return nil, err
		}
		for _, o := range objs {
			st, err := s.study(o)
			if err != nil {
				return nil, err
			}
			out = append(out, st)
		}
		if len(objs) < PageSize {
			break
		}
	}
	if q.WithSeries {
		for i := range out {
			if err := s.series(ctx, &out[i]); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

func (s *Source) qido(ctx context.Context, path string, v url.Values) ([]dicomjson.Object, error) {
	body, err := search.Get(ctx, s.http, s.info.URL+path+"?"+encodeQuery(v), "application/dicom+json")
	if err != nil {
		return nil, fmt.Errorf("dicomweb %s: %w", s.info.Name, err)
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		return nil, nil
	}
	objs, err := dicomjson.Unmarshal(body)
	if err != nil {
		return nil, fmt.Errorf("dicomweb %s: %w: %v", s.info.Name, search.ErrBadResponse, err)
	}
	return objs, nil
}

func (s *Source) study(o dicomjson.Object) (search.RemoteStudy, error) {
	st, err := StudyFromAttributes(o)
	if err != nil {
		return st, fmt.Errorf("dicomweb %s: %w", s.info.Name, err)
	}
	st.RetrieveBase, st.RetrieveURL, st.Source = s.info.URL, o.String(tag.RetrieveURL), s.info.Name
	return st, nil
}

// StudyFromAttributes reads the attributes of a study, as a QIDO-RS answer
// or a C-FIND identifier (search/dimsesource) gives them, into a
// RemoteStudy; its source and retrieval addresses are the caller's. A
// study without StudyInstanceUID is an error wrapping
// search.ErrBadResponse.
func StudyFromAttributes(o dicomjson.Object) (search.RemoteStudy, error) {
	st := search.RemoteStudy{
		StudyInstanceUID:  o.String(tag.StudyInstanceUID),
		Description:       o.String(tag.StudyDescription),
		AccessionNumber:   o.String(tag.AccessionNumber),
		ModalitiesInStudy: o.Strings(tag.ModalitiesInStudy),
	}
	if st.StudyInstanceUID == "" {
		return st, fmt.Errorf("%w: a study without StudyInstanceUID", search.ErrBadResponse)
	}
	st.NumberOfSeries, _ = o.Int(tag.NumberOfStudyRelatedSeries)
	st.NumberOfInstances, _ = o.Int(tag.NumberOfStudyRelatedInstances)
	st.Date = studyDate(o.String(tag.StudyDate), o.String(tag.StudyTime), o.String(tag.TimezoneOffsetFromUTC))
	pn := o.PersonName(tag.PatientName)
	family, given := SplitPN(pn.Alphabetic)
	st.Patient = search.PatientIdentity{
		ID:        o.String(tag.PatientID),
		Issuer:    o.String(tag.IssuerOfPatientID),
		Family:    family,
		Given:     given,
		BirthDate: isoDate(o.String(tag.PatientBirthDate)),
		Sex:       gender(o.String(tag.PatientSex)),
	}
	return st, nil
}

// SeriesFromAttributes reads the attributes of a series, as QIDO-RS or
// C-FIND gives them.
func SeriesFromAttributes(o dicomjson.Object) search.RemoteSeries {
	se := search.RemoteSeries{
		SeriesInstanceUID: o.String(tag.SeriesInstanceUID),
		Modality:          o.String(tag.Modality),
		BodyPartExamined:  o.String(tag.BodyPartExamined),
		Description:       o.String(tag.SeriesDescription),
	}
	se.NumberOfInstances, _ = o.Int(tag.NumberOfSeriesRelatedInstances)
	return se
}

func (s *Source) series(ctx context.Context, st *search.RemoteStudy) error {
	v := url.Values{}
	for _, t := range seriesFields {
		v.Add("includefield", dicomjson.Key(t))
	}
	var all []search.RemoteSeries
	for page := 0; page < maxPages; page++ {
		v.Set("limit", strconv.Itoa(PageSize))
		v.Set("offset", strconv.Itoa(page*PageSize))
		objs, err := s.qido(ctx, "/studies/"+url.PathEscape(st.StudyInstanceUID)+"/series", v)
		if err != nil {
			return err
		}
		for _, o := range objs {
			all = append(all, SeriesFromAttributes(o))
		}
		if len(objs) < PageSize {
			break
		}
	}
	SetSeries(st, all)
	return nil
}

// SetSeries gives a study its series and what they tell of it: the body
// parts examined, and the modalities and counts where the study's own
// attributes did not give them.
func SetSeries(st *search.RemoteStudy, all []search.RemoteSeries) {
	st.Series = all
	var parts, mods []string
	total := 0
	for _, se := range all {
		total += se.NumberOfInstances
		if se.BodyPartExamined != "" && !slices.Contains(parts, se.BodyPartExamined) {
			parts = append(parts, se.BodyPartExamined)
		}
		if se.Modality != "" && !slices.Contains(mods, se.Modality) {
			mods = append(mods, se.Modality)
		}
	}
	st.BodyParts = parts
	if len(st.ModalitiesInStudy) == 0 {
		st.ModalitiesInStudy = mods
	}
	if st.NumberOfSeries == 0 {
		st.NumberOfSeries = len(all)
	}
	if st.NumberOfInstances == 0 {
		st.NumberOfInstances = total
	}
}

// SplitPN splits the alphabetic group of a DICOM PN (PS3.5 6.2) into the
// family name and the given and middle names.
func SplitPN(pn string) (family string, given []string) {
	parts := strings.Split(pn, "^")
	family = strings.TrimSpace(parts[0])
	for _, p := range parts[1:min(len(parts), 3)] {
		given = append(given, strings.Fields(p)...)
	}
	return family, given
}

// isoDate turns a DA (YYYYMMDD) into YYYY-MM-DD; anything else gives "".
func isoDate(da string) string {
	da = strings.TrimSpace(da)
	if t, err := time.Parse("20060102", da); err == nil {
		return t.Format("2006-01-02")
	}
	return ""
}

func studyDate(da, tm, tz string) time.Time {
	loc := time.UTC
	if t, err := time.Parse("-0700", tz); err == nil {
		loc = t.Location()
	}
	d, err := time.ParseInLocation("20060102", strings.TrimSpace(da), loc)
	if err != nil {
		return time.Time{}
	}
	tm = strings.TrimSpace(tm)
	if i := strings.IndexByte(tm, '.'); i >= 0 {
		tm = tm[:i]
	}
	for _, layout := range []string{"150405", "1504", "15"} {
		if t, err := time.ParseInLocation("20060102"+layout, d.Format("20060102")+tm, loc); err == nil && len(tm) == len(layout) {
			return t
		}
	}
	return d
}

func gender(sex string) string {
	switch strings.ToUpper(strings.TrimSpace(sex)) {
	case "M":
		return "male"
	case "F":
		return "female"
	case "O":
		return "other"
	}
	return ""
}

// encodeQuery writes a QIDO-RS query so that a server that does not
// percent-decode query values matches it all the same. Orthanc 1.10 with
// its DICOMweb plugin 1.7 (Debian 12's) matches the escaped text itself:
// PatientID=%50%31 finds nothing, nor does PatientName=VAN%20DER* or
// M%C3%9CLLER*, so patients with such names were never found there.
// Matching values go through matchingValue; the other parameters
// (includefield, limit, offset) need no escaping.
func encodeQuery(v url.Values) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(v)) {
		for _, val := range v[k] {
			if b.Len() > 0 {
				b.WriteByte('&')
			}
			b.WriteString(url.QueryEscape(k))
			b.WriteByte('=')
			b.WriteString(matchingValue(val))
		}
	}
	return b.String()
}

// matchingValue sends what needs no escaping in a query string as is (the
// wildcards "*" and "?" included: escaped, some servers match them
// literally), any other character as a wildcard (search.MatchingValue).
func matchingValue(s string) string {
	return search.MatchingValue(s, func(r rune) bool {
		return 'A' <= r && r <= 'Z' || 'a' <= r && r <= 'z' || '0' <= r && r <= '9' || strings.ContainsRune("-._~*?:", r)
	})
}
