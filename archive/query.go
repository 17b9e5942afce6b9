package archive

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/priorflow/priorflow/fhir"
)

// ErrInvalidQuery reports a search the archive cannot run, such as a
// malformed date range. The DICOMweb layer answers it with 400.
var ErrInvalidQuery = errors.New("invalid query")

// Level is the level of a search (PS3.4 C.6.1.1: STUDY, SERIES, IMAGE).
type Level int

// Search levels.
const (
	LevelStudy Level = iota + 1
	LevelSeries
	LevelInstance
)

// MaxSearchResults bounds the results of one search; a request asking for
// more gets this many (PS3.18 8.3.4.4.1 lets the server cap them).
const MaxSearchResults = 1000

// Query is a QIDO-RS search (PS3.18 10.6.1) compiled from its query
// parameters. Empty fields match everything (universal matching, PS3.4
// C.2.2.2.3). String fields may hold the wildcards "*" and "?" (PS3.4
// C.2.2.2.4); UID lists match any of their UIDs (PS3.4 C.2.2.2.2).
type Query struct {
	// Study and Series scope the search to the study and series named in the
	// request path (PS3.18 10.6.1.2).
	Study, Series string

	StudyInstanceUID  []string
	SeriesInstanceUID []string
	SOPInstanceUID    []string
	SOPClassUID       []string

	PatientID         string
	IssuerOfPatientID string
	// PatientName and ReferringPhysicianName match case- and
	// accent-insensitively, as PS3.4 C.2.2.2.1 allows for PN.
	PatientName            string
	ReferringPhysicianName string
	PatientBirthDate       Range
	StudyDate              Range
	StudyTime              Range
	AccessionNumber        string
	StudyDescription       string
	// ModalitiesInStudy matches a study with a series of any of the values.
	ModalitiesInStudy []string
	Modality          []string

	// Limit is the most results to return, at most MaxSearchResults (0
	// means MaxSearchResults); Offset skips the first results
	// (PS3.18 8.3.4.4).
	Limit, Offset int
	// WithMetadata asks an instance-level search for the stored DICOM JSON
	// of each instance (includefield=all).
	WithMetadata bool
}

// Range is an inclusive range of DA or TM values in their DICOM text form
// (PS3.4 C.2.2.2.5). The zero Range matches everything.
type Range struct {
	Lo, Hi string
	set    bool
}

// IsZero reports whether r matches everything.
func (r Range) IsZero() bool { return !r.set }

// ParseDateRange parses a DA match value (PS3.4 C.2.2.2.5): "20200101",
// "20200101-20201231", "-20201231" or "20200101-". As a lenient extension a
// bound may name a year ("2020") or a month ("202003"), standing for all of
// it. An empty value is universal matching.
func ParseDateRange(s string) (Range, error) {
	return parseRange(s, 8, "date", validDatePrefix)
}

// ParseTimeRange parses a TM match value (PS3.4 C.2.2.2.5): "1030",
// "103000.5-120000", "-1200" or "0800-". A bound matches at its precision:
// "1200" as an upper bound includes 12:00:59.999999. Colons of the
// ACR-NEMA form ("10:30") are removed.
func ParseTimeRange(s string) (Range, error) {
	return parseRange(strings.ReplaceAll(s, ":", ""), 13, "time", validTimePrefix)
}

func parseRange(s string, maxLen int, what string, valid func(string) bool) (Range, error) {
	if s == "" {
		return Range{}, nil
	}
	lo, hi, isRange := strings.Cut(s, "-")
	if !isRange {
		hi = lo
	}
	if lo == "" && hi == "" {
		return Range{}, fmt.Errorf("%w: %s range %q has no bound", ErrInvalidQuery, what, s)
	}
	for _, b := range []string{lo, hi} {
		if b != "" && (len(b) > maxLen || !valid(b)) {
			return Range{}, fmt.Errorf("%w: %q is not a DICOM %s or %s range", ErrInvalidQuery, s, what, what)
		}
	}
	r := Range{Lo: lo, Hi: hi, set: true}
	if r.Lo == "" {
		r.Lo = "0" // above "", so that empty values never match a range
	}
	if r.Hi == "" {
		r.Hi = "~"
	} else {
		// "~" sorts after every digit and ".": the bound covers all values
		// it is a prefix of, which is matching at the bound's precision.
		r.Hi += "~"
	}
	if lo != "" && hi != "" && lo > hi {
		return Range{}, fmt.Errorf("%w: %s range %q ends before it starts", ErrInvalidQuery, what, s)
	}
	return r, nil
}

func validDatePrefix(s string) bool {
	if len(s) != 4 && len(s) != 6 && len(s) != 8 {
		return false
	}
	return allDigits(s)
}

func validTimePrefix(s string) bool {
	hhmmss, frac, hasFrac := strings.Cut(s, ".")
	if len(hhmmss) < 2 || len(hhmmss) > 6 || len(hhmmss)%2 != 0 || !allDigits(hhmmss) {
		return false
	}
	if hasFrac && (len(hhmmss) != 6 || len(frac) == 0 || len(frac) > 6 || !allDigits(frac)) {
		return false
	}
	// HH 00-23, MM 00-59, SS 00-60 (leap second), PS3.5 6.2 TM.
	for i, limit := range []int{24, 60, 61} {
		if 2*i+2 <= len(hhmmss) && int(hhmmss[2*i]-'0')*10+int(hhmmss[2*i+1]-'0') >= limit {
			return false
		}
	}
	return true
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// StudyRow is one study found by a search, with the attributes of PS3.18
// Table 6.7.1-2.
type StudyRow struct {
	StudyInstanceUID       string
	PatientID              string
	IssuerOfPatientID      string
	PatientName            string // PN as stored
	PatientBirthDate       string
	PatientSex             string
	StudyDate              string
	StudyTime              string
	TimezoneOffsetFromUTC  string
	AccessionNumber        string
	StudyID                string
	StudyDescription       string
	ReferringPhysicianName string // PN as stored
	SpecificCharacterSet   string // values separated by "\"

	// Set by study-level searches only.
	ModalitiesInStudy             []string
	NumberOfStudyRelatedSeries    int
	NumberOfStudyRelatedInstances int
}

// SeriesRow is one series found by a search, with the attributes of PS3.18
// Table 6.7.1-2a and those of its study.
type SeriesRow struct {
	Study             StudyRow
	SeriesInstanceUID string
	Modality          string
	SeriesNumber      *int
	SeriesDescription string
	BodyPartExamined  string
	Laterality        string
	SeriesDate        string
	SeriesTime        string

	// Set by series-level searches only.
	NumberOfSeriesRelatedInstances int
}

// InstanceRow is one instance found by a search, with the attributes of
// PS3.18 Table 6.7.1-2b and those of its series and study.
type InstanceRow struct {
	Series            SeriesRow
	SOPInstanceUID    string
	SOPClassUID       string
	TransferSyntaxUID string
	InstanceNumber    *int
	Rows, Columns     *int
	NumberOfFrames    int
	// Metadata is the stored DICOM JSON (BulkDataURIs relative to the
	// DICOMweb root), when Query.WithMetadata is set.
	Metadata []byte
}

// conds is a search compiled into SQL conditions and their arguments.
type conds struct {
	where []string
	args  []any
}

// arg adds an argument and returns its placeholder.
func (c *conds) arg(v any) string {
	c.args = append(c.args, v)
	return fmt.Sprintf("$%d", len(c.args))
}

func (c *conds) add(cond string) { c.where = append(c.where, cond) }

func (c *conds) sql() string {
	if len(c.where) == 0 {
		return ""
	}
	return "WHERE " + strings.Join(c.where, " AND ")
}

// uids adds list-of-UID matching (PS3.4 C.2.2.2.2).
func (c *conds) uids(col string, v []string) {
	if len(v) > 0 {
		c.add(col + " = ANY(" + c.arg(v) + ")")
	}
}

// text adds single value or wildcard matching (PS3.4 C.2.2.2.1, C.2.2.2.4).
func (c *conds) text(col, v string) {
	switch {
	case v == "" || strings.Trim(v, "*") == "":
		// Universal matching: "*" alone matches everything, empty included.
	case strings.ContainsAny(v, "*?"):
		c.add(col + " LIKE " + c.arg(likePattern(v)))
	default:
		c.add(col + " = " + c.arg(v))
	}
}

func (c *conds) rng(col string, r Range) {
	if !r.IsZero() {
		c.add(col + " BETWEEN " + c.arg(r.Lo) + " AND " + c.arg(r.Hi))
	}
}

// likePattern turns a DICOM wildcard value into a LIKE pattern: "*" is any
// run of characters, "?" one character, and LIKE's own specials are escaped.
func likePattern(v string) string {
	var b strings.Builder
	for _, r := range v {
		switch r {
		case '*':
			b.WriteByte('%')
		case '?':
			b.WriteByte('_')
		case '%', '_', '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// compile turns the match keys of q into conditions on st (dicom_study) and,
// from the series level down, se (dicom_series) and i (dicom_instance).
func (q *Query) compile(level Level) *conds {
	c := &conds{}
	if q.Study != "" {
		c.add("st.study_uid = " + c.arg(q.Study))
	}
	c.uids("st.study_uid", q.StudyInstanceUID)
	if q.PatientID != "" || q.IssuerOfPatientID != "" {
		c.text("st.patient_id", q.PatientID)
		c.text("st.issuer", q.IssuerOfPatientID)
	}
	c.text("st.patient_name_norm", fhir.NormalizeString(q.PatientName))
	c.text("st.referring_norm", fhir.NormalizeString(q.ReferringPhysicianName))
	c.rng("st.patient_birth_date", q.PatientBirthDate)
	c.rng("st.study_date", q.StudyDate)
	c.rng("st.study_time", q.StudyTime)
	c.text("st.accession_number", q.AccessionNumber)
	c.text("st.study_description", q.StudyDescription)
	if len(q.ModalitiesInStudy) > 0 {
		c.add("EXISTS (SELECT 1 FROM dicom_series ms WHERE ms.study_uid = st.study_uid AND ms.modality = ANY(" + c.arg(q.ModalitiesInStudy) + "))")
	}
	if level >= LevelSeries {
		if q.Series != "" {
			c.add("se.series_uid = " + c.arg(q.Series))
		}
		c.uids("se.series_uid", q.SeriesInstanceUID)
		c.uids("se.modality", q.Modality)
	}
	if level >= LevelInstance {
		c.uids("i.sop_uid", q.SOPInstanceUID)
		c.uids("i.sop_class_uid", q.SOPClassUID)
	}
	return c
}

// page returns LIMIT and OFFSET, asking for one row more than the page so
// that the caller learns whether results were left off.
func (q *Query) page(c *conds) string {
	limit := q.Limit
	if limit <= 0 || limit > MaxSearchResults {
		limit = MaxSearchResults
	}
	offset := max(q.Offset, 0)
	return "LIMIT " + c.arg(limit+1) + " OFFSET " + c.arg(offset)
}

func (q *Query) limit() int {
	if q.Limit <= 0 || q.Limit > MaxSearchResults {
		return MaxSearchResults
	}
	return q.Limit
}

const studyColumns = `st.study_uid, st.patient_id, st.issuer, st.patient_name, st.patient_birth_date, st.patient_sex,
	st.study_date, st.study_time, st.timezone_offset, st.accession_number, st.study_id, st.study_description,
	st.referring_physician, st.specific_charset`

func (s *StudyRow) dest() []any {
	return []any{&s.StudyInstanceUID, &s.PatientID, &s.IssuerOfPatientID, &s.PatientName, &s.PatientBirthDate, &s.PatientSex,
		&s.StudyDate, &s.StudyTime, &s.TimezoneOffsetFromUTC, &s.AccessionNumber, &s.StudyID, &s.StudyDescription,
		&s.ReferringPhysicianName, &s.SpecificCharacterSet}
}

const seriesColumns = `se.series_uid, se.modality, se.series_number, se.series_description, se.body_part,
	se.laterality, se.series_date, se.series_time`

func (s *SeriesRow) dest() []any {
	return []any{&s.SeriesInstanceUID, &s.Modality, &s.SeriesNumber, &s.SeriesDescription, &s.BodyPartExamined,
		&s.Laterality, &s.SeriesDate, &s.SeriesTime}
}

// Study order: newest first (dicom_study_order read backwards), then
// series and instances by number.
const (
	studyOrder    = `st.study_date DESC, st.study_time DESC, st.study_uid DESC`
	seriesOrder   = studyOrder + `, se.series_number NULLS LAST, se.series_uid`
	instanceOrder = seriesOrder + `, i.instance_number NULLS LAST, i.sop_uid`
)

// SearchStudies runs a study-level search (PS3.18 10.6.1, SearchForStudies).
// more reports that results beyond the page were left off.
func (a *Archive) SearchStudies(ctx context.Context, q Query) (rows []StudyRow, more bool, err error) {
	c := q.compile(LevelStudy)
	// The page is chosen first and the counts are computed for it alone.
	sql := `SELECT ` + studyColumns + `, ser.n, ser.modalities, ins.n
		FROM (SELECT st.* FROM dicom_study st ` + c.sql() + ` ORDER BY ` + studyOrder + ` ` + q.page(c) + `) st
		CROSS JOIN LATERAL (SELECT count(*) AS n,
				COALESCE(array_agg(DISTINCT modality ORDER BY modality) FILTER (WHERE modality <> ''), '{}') AS modalities
			FROM dicom_series WHERE study_uid = st.study_uid) ser
		CROSS JOIN LATERAL (SELECT count(*) AS n FROM dicom_instance WHERE study_uid = st.study_uid) ins
		ORDER BY ` + studyOrder
	rs, err := a.store.Pool().Query(ctx, sql, c.args...)
	if err != nil {
		return nil, false, fmt.Errorf("search studies: %w", err)
	}
	rows, err = pgx.CollectRows(rs, func(r pgx.CollectableRow) (StudyRow, error) {
		var s StudyRow
		err := r.Scan(append(s.dest(), &s.NumberOfStudyRelatedSeries, &s.ModalitiesInStudy, &s.NumberOfStudyRelatedInstances)...)
		return s, err
	})
	if err != nil {
		return nil, false, fmt.Errorf("search studies: %w", err)
	}
	if len(rows) > q.limit() {
		return rows[:q.limit()], true, nil
	}
	return rows, false, nil
}

// SearchSeries runs a series-level search (PS3.18 10.6.1, SearchForSeries).
func (a *Archive) SearchSeries(ctx context.Context, q Query) (rows []SeriesRow, more bool, err error) {
	c := q.compile(LevelSeries)
	sql := `SELECT ` + studyColumns + `, ` + seriesColumns + `, ins.n
		FROM (SELECT st.*, se.series_uid AS se_uid FROM dicom_series se JOIN dicom_study st ON st.study_uid = se.study_uid
			` + c.sql() + ` ORDER BY ` + seriesOrder + ` ` + q.page(c) + `) st
		JOIN dicom_series se ON se.series_uid = st.se_uid
		CROSS JOIN LATERAL (SELECT count(*) AS n FROM dicom_instance WHERE series_uid = se.series_uid) ins
		ORDER BY ` + seriesOrder
	rs, err := a.store.Pool().Query(ctx, sql, c.args...)
	if err != nil {
		return nil, false, fmt.Errorf("search series: %w", err)
	}
	rows, err = pgx.CollectRows(rs, func(r pgx.CollectableRow) (SeriesRow, error) {
		var s SeriesRow
		err := r.Scan(append(append(s.Study.dest(), s.dest()...), &s.NumberOfSeriesRelatedInstances)...)
		return s, err
	})
	if err != nil {
		return nil, false, fmt.Errorf("search series: %w", err)
	}
	if len(rows) > q.limit() {
		return rows[:q.limit()], true, nil
	}
	return rows, false, nil
}

// SearchInstances runs an instance-level search (PS3.18 10.6.1,
// SearchForInstances).
func (a *Archive) SearchInstances(ctx context.Context, q Query) (rows []InstanceRow, more bool, err error) {
	c := q.compile(LevelInstance)
	meta := `''`
	if q.WithMetadata {
		meta = `i.metadata`
	}
	sql := `SELECT ` + studyColumns + `, ` + seriesColumns + `,
			i.sop_uid, i.sop_class_uid, i.transfer_syntax, i.instance_number, i.rows, i.columns, i.number_of_frames, ` + meta + `
		FROM dicom_instance i
		JOIN dicom_series se ON se.series_uid = i.series_uid
		JOIN dicom_study st ON st.study_uid = i.study_uid
		` + c.sql() + ` ORDER BY ` + instanceOrder + ` ` + q.page(c)
	rs, err := a.store.Pool().Query(ctx, sql, c.args...)
	if err != nil {
		return nil, false, fmt.Errorf("search instances: %w", err)
	}
	rows, err = pgx.CollectRows(rs, func(r pgx.CollectableRow) (InstanceRow, error) {
		var in InstanceRow
		var md string
		dest := append(append(in.Series.Study.dest(), in.Series.dest()...),
			&in.SOPInstanceUID, &in.SOPClassUID, &in.TransferSyntaxUID, &in.InstanceNumber, &in.Rows, &in.Columns, &in.NumberOfFrames, &md)
		err := r.Scan(dest...)
		if md != "" {
			in.Metadata = []byte(md)
		}
		return in, err
	})
	if err != nil {
		return nil, false, fmt.Errorf("search instances: %w", err)
	}
	if len(rows) > q.limit() {
		return rows[:q.limit()], true, nil
	}
	return rows, false, nil
}

// SampleMetadata returns, for each study (level LevelStudy) or series
// (LevelSeries) of uids, the stored DICOM JSON of one of its instances: the
// source of the attributes an includefield asks for that the index has no
// column for (PS3.18 8.3.4.3). Keys are the study or series UIDs.
func (a *Archive) SampleMetadata(ctx context.Context, level Level, uids []string) (map[string][]byte, error) {
	col := "study_uid"
	if level == LevelSeries {
		col = "series_uid"
	}
	rs, err := a.store.Pool().Query(ctx, `SELECT DISTINCT ON (`+col+`) `+col+`, metadata
		FROM dicom_instance WHERE `+col+` = ANY($1) ORDER BY `+col+`, instance_number NULLS LAST, sop_uid`, uids)
	if err != nil {
		return nil, fmt.Errorf("sample metadata: %w", err)
	}
	out := map[string][]byte{}
	var uid, md string
	_, err = pgx.ForEachRow(rs, []any{&uid, &md}, func() error {
		out[uid] = []byte(md)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sample metadata: %w", err)
	}
	return out, nil
}

// StoredInstance locates the stored object of one instance.
type StoredInstance struct {
	StudyInstanceUID  string
	SeriesInstanceUID string
	SOPInstanceUID    string
	SOPClassUID       string
	TransferSyntaxUID string
	BlobKey           string
	Size              int64
	// Metadata is the stored DICOM JSON, BulkDataURIs relative to the
	// DICOMweb root; set by Metadata only.
	Metadata []byte
}

// Instances lists the stored instances of a study, of a series of it (series
// set) or one instance (series and sop set), in series and instance number
// order, for WADO-RS (PS3.18 10.4). It returns ErrNotFound when there is
// none. Metadata is not loaded.
func (a *Archive) Instances(ctx context.Context, study, series, sop string) ([]StoredInstance, error) {
	c := &conds{}
	c.add("i.study_uid = " + c.arg(study))
	if series != "" {
		c.add("i.series_uid = " + c.arg(series))
	}
	if sop != "" {
		c.add("i.sop_uid = " + c.arg(sop))
	}
	rs, err := a.store.Pool().Query(ctx, `SELECT i.study_uid, i.series_uid, i.sop_uid, i.sop_class_uid, i.transfer_syntax, i.blob_key, i.size
		FROM dicom_instance i JOIN dicom_series se ON se.series_uid = i.series_uid
		`+c.sql()+`
		ORDER BY se.series_number NULLS LAST, se.series_uid, i.instance_number NULLS LAST, i.sop_uid`, c.args...)
	if err != nil {
		return nil, fmt.Errorf("instances: %w", err)
	}
	out, err := pgx.CollectRows(rs, func(r pgx.CollectableRow) (StoredInstance, error) {
		var s StoredInstance
		err := r.Scan(&s.StudyInstanceUID, &s.SeriesInstanceUID, &s.SOPInstanceUID, &s.SOPClassUID, &s.TransferSyntaxUID, &s.BlobKey, &s.Size)
		return s, err
	})
	if err != nil {
		return nil, fmt.Errorf("instances: %w", err)
	}
	if len(out) == 0 {
		return nil, ErrNotFound
	}
	return out, nil
}

// metadataBatch is how many instances' metadata Metadata holds at once.
const metadataBatch = 64

// Metadata calls fn with each stored instance of a study, series or instance
// (as Instances selects them), Metadata set, in order. It loads metadata a
// batch at a time, so memory does not grow with the study, and holds no
// database connection while fn runs.
func (a *Archive) Metadata(ctx context.Context, study, series, sop string, fn func(StoredInstance) error) error {
	list, err := a.Instances(ctx, study, series, sop)
	if err != nil {
		return err
	}
	for start := 0; start < len(list); start += metadataBatch {
		batch := list[start:min(start+metadataBatch, len(list))]
		uids := make([]string, len(batch))
		for i, s := range batch {
			uids[i] = s.SOPInstanceUID
		}
		rs, err := a.store.Pool().Query(ctx, `SELECT sop_uid, metadata FROM dicom_instance WHERE sop_uid = ANY($1)`, uids)
		if err != nil {
			return fmt.Errorf("metadata: %w", err)
		}
		md := make(map[string][]byte, len(batch))
		var uid, m string
		if _, err := pgx.ForEachRow(rs, []any{&uid, &m}, func() error {
			md[uid] = []byte(m)
			return nil
		}); err != nil {
			return fmt.Errorf("metadata: %w", err)
		}
		for _, s := range batch {
			s.Metadata = md[s.SOPInstanceUID]
			if s.Metadata == nil {
				continue // deleted meanwhile
			}
			if err := fn(s); err != nil {
				return err
			}
		}
	}
	return nil
}
