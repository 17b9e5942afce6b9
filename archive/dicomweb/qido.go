package dicomweb

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/priorflow/priorflow/archive"
	"github.com/priorflow/priorflow/archive/dicomjson"
)

// qidoRoutes serves QIDO-RS (PS3.18 10.6): the search resources of
// PS3.18 Table 10.6.1-1 (SearchForStudies, SearchForSeries and
// SearchForInstances, each in all its scopes).
func (h *Handler) qidoRoutes(r chi.Router) {
	r.Get("/studies", h.searchStudies)
	r.Get("/series", h.searchSeries)
	r.Get("/studies/{study}/series", h.searchSeries)
	r.Get("/instances", h.searchInstances)
	r.Get("/studies/{study}/instances", h.searchInstances)
	r.Get("/studies/{study}/series/{series}/instances", h.searchInstances)
}

// Tags of the return attributes (PS3.18 Table 6.7.1-2, -2a, -2b) that
// the suyashkumar/dicom dictionary has no constant for.
var (
	tagTimezoneOffsetFromUTC = tag.Tag{Group: 0x0008, Element: 0x0201}
	tagRetrieveURL           = tag.Tag{Group: 0x0008, Element: 0x1190}
)

// startQIDO parses a search request: Accept, path scope and query. It
// answers the request itself when it returns false.
func (h *Handler) startQIDO(w http.ResponseWriter, r *http.Request, level archive.Level) (*qidoRequest, bool) {
	if !negotiateJSON(r.Header.Values("Accept")) {
		h.fail(w, r, http.StatusNotAcceptable, "QIDO-RS answers in application/dicom+json only")
		return nil, false
	}
	req, err := parseQIDO(r.URL.Query(), level)
	if err != nil {
		h.fail(w, r, http.StatusBadRequest, err.Error())
		return nil, false
	}
	if chi.URLParam(r, "study") != "" {
		if req.query.Study, _ = h.uidParam(w, r, "study"); req.query.Study == "" {
			return nil, false
		}
	}
	if chi.URLParam(r, "series") != "" {
		if req.query.Series, _ = h.uidParam(w, r, "series"); req.query.Series == "" {
			return nil, false
		}
	}
	matchable, err := h.confineQIDO(r.Context(), &req.query)
	switch {
	case err != nil:
		h.searchFailed(w, r, err)
		return nil, false
	case !matchable:
		h.writeSearch(w, r, nil, false)
		return nil, false
	}
	return req, true
}

func (h *Handler) searchStudies(w http.ResponseWriter, r *http.Request) {
	req, ok := h.startQIDO(w, r, archive.LevelStudy)
	if !ok {
		return
	}
	rows, more, err := h.a.SearchStudies(r.Context(), req.query)
	if err != nil {
		h.searchFailed(w, r, err)
		return
	}
	var sample map[string][]byte
	if req.include.needsMetadata(studyAttrs) {
		uids := make([]string, len(rows))
		for i, s := range rows {
			uids[i] = s.StudyInstanceUID
		}
		if sample, err = h.a.SampleMetadata(r.Context(), archive.LevelStudy, uids); err != nil {
			h.searchFailed(w, r, err)
			return
		}
	}
	out := make([]dicomjson.Object, 0, len(rows))
	for i := range rows {
		s := &rows[i]
		o := dicomjson.Object{}
		h.addIncluded(o, sample[s.StudyInstanceUID], req.include, studyAttrs)
		putStudy(o, s, true)
		o[dicomjson.Key(tagRetrieveURL)] = str("UR", h.studyURL(s.StudyInstanceUID))
		out = append(out, o)
	}
	h.writeSearch(w, r, out, more)
}

func (h *Handler) searchSeries(w http.ResponseWriter, r *http.Request) {
	req, ok := h.startQIDO(w, r, archive.LevelSeries)
	if !ok {
		return
	}
	rows, more, err := h.a.SearchSeries(r.Context(), req.query)
	if err != nil {
		h.searchFailed(w, r, err)
		return
	}
	// A search of all series also returns the study attributes
	// (PS3.18 Table 6.7.1-2a, note).
	allSeries := req.query.Study == ""
	attrs := seriesAttrs
	if allSeries {
		attrs = append(attrs[:len(attrs):len(attrs)], studyAttrs...)
	}
	var sample map[string][]byte
	if req.include.needsMetadata(attrs) {
		uids := make([]string, len(rows))
		for i, s := range rows {
			uids[i] = s.SeriesInstanceUID
		}
		if sample, err = h.a.SampleMetadata(r.Context(), archive.LevelSeries, uids); err != nil {
			h.searchFailed(w, r, err)
			return
		}
	}
	out := make([]dicomjson.Object, 0, len(rows))
	for i := range rows {
		s := &rows[i]
		o := dicomjson.Object{}
		h.addIncluded(o, sample[s.SeriesInstanceUID], req.include, attrs)
		if allSeries {
			putStudy(o, &s.Study, false)
		}
		putSeries(o, s, true, req.include)
		o[dicomjson.Key(tagRetrieveURL)] = str("UR", h.seriesURL(s.Study.StudyInstanceUID, s.SeriesInstanceUID))
		out = append(out, o)
	}
	h.writeSearch(w, r, out, more)
}

func (h *Handler) searchInstances(w http.ResponseWriter, r *http.Request) {
	req, ok := h.startQIDO(w, r, archive.LevelInstance)
	if !ok {
		return
	}
	// Attributes outside the index come from each instance's stored
	// metadata.
	req.query.WithMetadata = req.include.all || req.include.needsMetadata(instanceAttrs)
	rows, more, err := h.a.SearchInstances(r.Context(), req.query)
	if err != nil {
		h.searchFailed(w, r, err)
		return
	}
	// Searches beyond one series also return the series attributes, and
	// those of all instances the study attributes (PS3.18 Table 6.7.1-2b).
	withSeries, withStudy := req.query.Series == "", req.query.Study == ""
	out := make([]dicomjson.Object, 0, len(rows))
	for i := range rows {
		in := &rows[i]
		o := dicomjson.Object{}
		if in.Metadata != nil {
			if err := h.addMetadata(o, in.Metadata, req.include); err != nil {
				h.searchFailed(w, r, err)
				return
			}
		}
		if withStudy {
			putStudy(o, &in.Series.Study, false)
		}
		if withSeries {
			putSeries(o, &in.Series, false, req.include)
		}
		putInstance(o, in)
		o[dicomjson.Key(tagRetrieveURL)] = str("UR", h.instanceURL(in.Series.Study.StudyInstanceUID, in.Series.SeriesInstanceUID, in.SOPInstanceUID))
		out = append(out, o)
	}
	h.writeSearch(w, r, out, more)
}

func (h *Handler) searchFailed(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, archive.ErrInvalidQuery) {
		h.fail(w, r, http.StatusBadRequest, unwrapInvalid(err))
		return
	}
	if r.Context().Err() != nil {
		return // the client went away
	}
	h.log.ErrorContext(r.Context(), "qido search failed", "err", err)
	h.fail(w, r, http.StatusInternalServerError, "the search failed")
}

// writeSearch writes a search response (PS3.18 8.3.4.4, 10.6.3): the
// matches as a DICOM JSON array; 204 No Content when there are none, as
// PS3.18 8.3.4.4.1 requires (CP-2473 proposes 200 with an empty array);
// and the Warning of PS3.18 8.3.4.4.1 when results were left off.
func (h *Handler) writeSearch(w http.ResponseWriter, r *http.Request, out []dicomjson.Object, more bool) {
	if more {
		w.Header().Set("Warning", `299 priorflow: "There are additional results that can be requested"`)
	}
	if len(out) == 0 {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	b, err := json.Marshal(out)
	if err != nil {
		h.searchFailed(w, r, err)
		return
	}
	w.Header().Set("Content-Type", mediaDICOMJSON)
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	_, _ = w.Write(b)
}

func (h *Handler) studyURL(study string) string { return h.base + "/studies/" + study }

func (h *Handler) seriesURL(study, series string) string {
	return h.studyURL(study) + "/series/" + series
}

func (h *Handler) instanceURL(study, series, sop string) string {
	return h.seriesURL(study, series) + "/instances/" + sop
}

// Attributes each level returns from the index; includefield of another
// attribute takes it from stored metadata.
var (
	studyAttrs = []tag.Tag{tag.SpecificCharacterSet, tag.StudyDate, tag.StudyTime, tag.AccessionNumber,
		tag.ModalitiesInStudy, tag.ReferringPhysicianName, tag.PatientName, tag.PatientID, tag.IssuerOfPatientID,
		tag.PatientBirthDate, tag.PatientSex, tag.StudyInstanceUID, tag.StudyID, tag.NumberOfStudyRelatedSeries,
		tag.NumberOfStudyRelatedInstances, tagRetrieveURL, tagTimezoneOffsetFromUTC, tag.StudyDescription}
	seriesAttrs = []tag.Tag{tag.Modality, tag.SeriesDescription, tag.SeriesNumber, tag.SeriesInstanceUID,
		tag.NumberOfSeriesRelatedInstances, tag.BodyPartExamined, tagRetrieveURL,
		tag.Laterality, tag.SeriesDate, tag.SeriesTime}
	instanceAttrs = []tag.Tag{tag.SOPClassUID, tag.SOPInstanceUID, tag.InstanceNumber, tag.Rows, tag.Columns,
		tag.NumberOfFrames, tagRetrieveURL, tag.SpecificCharacterSet}
)

// needsMetadata reports whether the includefield names an attribute that
// is not among attrs.
func (in includes) needsMetadata(attrs []tag.Tag) bool {
	for t := range in.tags {
		if !containsTag(attrs, t) {
			return true
		}
	}
	return false
}

func containsTag(ts []tag.Tag, t tag.Tag) bool {
	for _, x := range ts {
		if x == t {
			return true
		}
	}
	return false
}

// addIncluded copies the attributes an includefield asks for, and that the
// index lacks, from a stored metadata sample into o.
func (h *Handler) addIncluded(o dicomjson.Object, md []byte, in includes, have []tag.Tag) {
	if md == nil {
		return
	}
	objs, err := dicomjson.Unmarshal(md)
	if err != nil || len(objs) != 1 {
		return
	}
	for t := range in.tags {
		if containsTag(have, t) {
			continue
		}
		if a, ok := objs[0].Attribute(t); ok {
			o[dicomjson.Key(t)] = h.absoluteBulk(a)
		}
	}
}

// addMetadata copies an instance's stored metadata into o: all of it for
// includefield=all, otherwise the attributes named.
func (h *Handler) addMetadata(o dicomjson.Object, md []byte, in includes) error {
	objs, err := dicomjson.Unmarshal(md)
	if err != nil {
		return err
	}
	if len(objs) != 1 {
		return errors.New("stored metadata is not one object")
	}
	for k, a := range objs[0] {
		t, _ := keyTag(k)
		if in.all || in.tags[t] {
			o[k] = h.absoluteBulk(a)
		}
	}
	return nil
}

func keyTag(k string) (tag.Tag, bool) {
	v, err := strconv.ParseUint(k, 16, 32)
	if err != nil {
		return tag.Tag{}, false
	}
	return tag.Tag{Group: uint16(v >> 16), Element: uint16(v)}, true
}

// absoluteBulk makes the BulkDataURIs of a stored attribute, and of the
// items of a sequence, absolute under the DICOMweb root.
func (h *Handler) absoluteBulk(a dicomjson.Attribute) dicomjson.Attribute {
	if a.BulkDataURI != "" && !strings.Contains(a.BulkDataURI, "://") {
		a.BulkDataURI = h.base + "/" + a.BulkDataURI
	}
	if a.VR == "SQ" {
		items := make([]any, len(a.Value))
		for i, v := range a.Value {
			item, ok := v.(dicomjson.Object)
			if !ok {
				items[i] = v
				continue
			}
			c := make(dicomjson.Object, len(item))
			for k, ia := range item {
				c[k] = h.absoluteBulk(ia)
			}
			items[i] = c
		}
		a.Value = items
	}
	return a
}

// putStudy sets the study attributes of PS3.18 Table 6.7.1-2; counts and
// ModalitiesInStudy only when the search was at the study level.
func putStudy(o dicomjson.Object, s *archive.StudyRow, studyLevel bool) {
	// The JSON is UTF-8 whatever the stored character set (PS3.18 F.2).
	o[dicomjson.Key(tag.SpecificCharacterSet)] = str("CS", "ISO_IR 192")
	o[dicomjson.Key(tag.StudyDate)] = str("DA", s.StudyDate)
	o[dicomjson.Key(tag.StudyTime)] = str("TM", s.StudyTime)
	o[dicomjson.Key(tag.AccessionNumber)] = str("SH", s.AccessionNumber)
	o[dicomjson.Key(tag.ReferringPhysicianName)] = pn(s.ReferringPhysicianName)
	o[dicomjson.Key(tag.PatientName)] = pn(s.PatientName)
	o[dicomjson.Key(tag.PatientID)] = str("LO", s.PatientID)
	o[dicomjson.Key(tag.IssuerOfPatientID)] = str("LO", s.IssuerOfPatientID)
	o[dicomjson.Key(tag.PatientBirthDate)] = str("DA", s.PatientBirthDate)
	o[dicomjson.Key(tag.PatientSex)] = str("CS", s.PatientSex)
	o[dicomjson.Key(tag.StudyInstanceUID)] = str("UI", s.StudyInstanceUID)
	o[dicomjson.Key(tag.StudyID)] = str("SH", s.StudyID)
	o[dicomjson.Key(tagTimezoneOffsetFromUTC)] = str("SH", s.TimezoneOffsetFromUTC)
	o[dicomjson.Key(tag.StudyDescription)] = str("LO", s.StudyDescription)
	if studyLevel {
		mods := dicomjson.Attribute{VR: "CS"}
		for _, m := range s.ModalitiesInStudy {
			mods.Value = append(mods.Value, m)
		}
		o[dicomjson.Key(tag.ModalitiesInStudy)] = mods
		o[dicomjson.Key(tag.NumberOfStudyRelatedSeries)] = num("IS", s.NumberOfStudyRelatedSeries)
		o[dicomjson.Key(tag.NumberOfStudyRelatedInstances)] = num("IS", s.NumberOfStudyRelatedInstances)
	}
}

// putSeries sets the series attributes of PS3.18 Table 6.7.1-2a; the
// instance count only when the search was at the series level. Laterality,
// SeriesDate and SeriesTime are indexed too and added on includefield.
func putSeries(o dicomjson.Object, s *archive.SeriesRow, seriesLevel bool, in includes) {
	o[dicomjson.Key(tag.Modality)] = str("CS", s.Modality)
	o[dicomjson.Key(tag.SeriesDescription)] = str("LO", s.SeriesDescription)
	o[dicomjson.Key(tag.SeriesNumber)] = optNum("IS", s.SeriesNumber)
	o[dicomjson.Key(tag.SeriesInstanceUID)] = str("UI", s.SeriesInstanceUID)
	o[dicomjson.Key(tag.BodyPartExamined)] = str("CS", s.BodyPartExamined)
	if seriesLevel {
		o[dicomjson.Key(tag.NumberOfSeriesRelatedInstances)] = num("IS", s.NumberOfSeriesRelatedInstances)
	}
	for t, v := range map[tag.Tag]dicomjson.Attribute{
		tag.Laterality: str("CS", s.Laterality), tag.SeriesDate: str("DA", s.SeriesDate), tag.SeriesTime: str("TM", s.SeriesTime),
	} {
		if in.all || in.tags[t] {
			o[dicomjson.Key(t)] = v
		}
	}
}

// putInstance sets the instance attributes of PS3.18 Table 6.7.1-2b.
func putInstance(o dicomjson.Object, in *archive.InstanceRow) {
	o[dicomjson.Key(tag.SpecificCharacterSet)] = str("CS", "ISO_IR 192")
	o[dicomjson.Key(tag.SOPClassUID)] = str("UI", in.SOPClassUID)
	o[dicomjson.Key(tag.SOPInstanceUID)] = str("UI", in.SOPInstanceUID)
	o[dicomjson.Key(tag.InstanceNumber)] = optNum("IS", in.InstanceNumber)
	o[dicomjson.Key(tag.Rows)] = optNum("US", in.Rows)
	o[dicomjson.Key(tag.Columns)] = optNum("US", in.Columns)
	frames := dicomjson.Attribute{VR: "IS"}
	if in.NumberOfFrames > 0 {
		frames = num("IS", in.NumberOfFrames)
	}
	o[dicomjson.Key(tag.NumberOfFrames)] = frames
}

// str is a string attribute; an empty value is written without "Value"
// (PS3.18 F.2.5).
func str(vr, v string) dicomjson.Attribute {
	if v == "" {
		return dicomjson.Attribute{VR: vr}
	}
	return dicomjson.Attribute{VR: vr, Value: []any{v}}
}

func num(vr string, n int) dicomjson.Attribute {
	return dicomjson.Attribute{VR: vr, Value: []any{json.Number(strconv.Itoa(n))}}
}

func optNum(vr string, n *int) dicomjson.Attribute {
	if n == nil {
		return dicomjson.Attribute{VR: vr}
	}
	return num(vr, *n)
}

// pn is a PN attribute from its DICOM form, component groups separated by
// "=" (PS3.5 6.2, PS3.18 F.2.2).
func pn(v string) dicomjson.Attribute {
	if v == "" {
		return dicomjson.Attribute{VR: "PN"}
	}
	g := strings.SplitN(v, "=", 3)
	var p dicomjson.PersonName
	p.Alphabetic = g[0]
	if len(g) > 1 {
		p.Ideographic = g[1]
	}
	if len(g) > 2 {
		p.Phonetic = g[2]
	}
	return dicomjson.Attribute{VR: "PN", Value: []any{p}}
}
