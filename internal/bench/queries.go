package bench

import (
	"net/url"
	"strconv"
	"time"
)

// Sample is one randomly chosen study of the loaded archive and what the
// searches need to find it again.
type Sample struct {
	StudyID     string
	StudyUID    string // StudyInstanceUID
	PatientID   string
	MRN         string
	LastUpdated time.Time
}

// Query is one benchmarked search: the FHIR request and the raw SQL that
// returns the same rows. The SQL is the text fhir/postgres/query.go builds
// for the request (same conditions, argument order and page size), so the
// difference between the two is the cost of the FHIR layer: HTTP, parsing,
// query building and the Bundle JSON.
type Query struct {
	Name string
	// Path is the FHIR request relative to the base.
	Path func(s *Sample) string
	SQL  string
	Args func(s *Sample) []any
	// Count is the page size the search asks for (the SQL fetches one more
	// row to know whether there is a next page).
	Count int

	// Paged searches follow next links up to Options.Pages pages; NextSQL
	// and NextArgs continue after the last row of a page (its sort key as
	// text and its rid, as the _cursor carries them).
	Paged    bool
	NextSQL  string
	NextArgs func(s *Sample, key string, rid int64) []any
}

const selectCols = `SELECT r.rid, r.id, r.version, r.last_updated, r.body`

// Queries returns the benchmarked searches; the paged scan asks for pages
// of pageSize entries.
func Queries(pageSize int) []*Query {
	const is = "ImagingStudy"
	day := func(t time.Time) time.Time { return t.AddDate(0, 0, 1) }
	since2020 := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	lastUpdated := func(s *Sample) time.Time { return s.LastUpdated.UTC().Truncate(time.Second) }
	return []*Query{
		{
			Name:  "patient",
			Path:  func(s *Sample) string { return is + "?patient=Patient/" + url.QueryEscape(s.PatientID) },
			Count: 50,
			SQL: selectCols + ` FROM resource r WHERE r.type = $1 AND NOT r.deleted` +
				` AND r.rid IN (SELECT x.rid FROM idx_ref x WHERE x.type = $4 AND x.param = $5 AND ((x.target_id = $2 AND x.target_type = $3)))` +
				` ORDER BY r.rid ASC LIMIT $6`,
			Args: func(s *Sample) []any { return []any{is, s.PatientID, "Patient", is, "patient", 51} },
		},
		{
			Name: "identifier",
			Path: func(s *Sample) string {
				return is + "?identifier=" + url.QueryEscape(SystemDICOMUID+"|urn:oid:"+s.StudyUID)
			},
			Count: 50,
			SQL: selectCols + ` FROM resource r WHERE r.type = $1 AND NOT r.deleted` +
				` AND r.rid IN (SELECT x.rid FROM idx_token x WHERE x.type = $4 AND x.param = $5 AND ((x.code = $2 AND x.system = $3)))` +
				` ORDER BY r.rid ASC LIMIT $6`,
			Args: func(s *Sample) []any { return []any{is, "urn:oid:" + s.StudyUID, SystemDICOMUID, is, "identifier", 51} },
		},
		{
			// Clauses compile in parameter-name order: modality, patient, started.
			Name: "patient+modality+started",
			Path: func(s *Sample) string {
				return is + "?patient=" + url.QueryEscape(s.PatientID) + "&modality=CT&started=ge2020-01-01"
			},
			Count: 50,
			SQL: selectCols + ` FROM resource r WHERE r.type = $1 AND NOT r.deleted` +
				` AND r.rid IN (SELECT x.rid FROM idx_token x WHERE x.type = $3 AND x.param = $4 AND (x.code = $2))` +
				` AND r.rid IN (SELECT x.rid FROM idx_ref x WHERE x.type = $7 AND x.param = $8 AND ((x.target_id = $5 AND x.target_type = $6)))` +
				` AND r.rid IN (SELECT x.rid FROM idx_date x WHERE x.type = $11 AND x.param = $12 AND ((x.lo >= $9 OR x.hi > $10)))` +
				` ORDER BY r.rid ASC LIMIT $13`,
			Args: func(s *Sample) []any {
				return []any{is, "CT", is, "modality", s.PatientID, "Patient", is, "patient",
					since2020, day(since2020), is, "started", 51}
			},
		},
		{
			Name:  "patient.identifier",
			Path:  func(s *Sample) string { return is + "?patient.identifier=" + url.QueryEscape(SystemMRN+"|"+s.MRN) },
			Count: 50,
			SQL: selectCols + ` FROM resource r WHERE r.type = $1 AND NOT r.deleted` +
				` AND r.rid IN (SELECT x.rid FROM idx_ref x WHERE x.type = $7 AND x.param = $8 AND x.target_type = $9 AND x.target_id IN` +
				` (SELECT t.id FROM resource t WHERE t.type = $2 AND NOT t.deleted` +
				` AND t.rid IN (SELECT x.rid FROM idx_token x WHERE x.type = $5 AND x.param = $6 AND ((x.code = $3 AND x.system = $4)))))` +
				` ORDER BY r.rid ASC LIMIT $10`,
			Args: func(s *Sample) []any {
				return []any{is, "Patient", s.MRN, SystemMRN, "Patient", "identifier", is, "patient", "Patient", 51}
			},
		},
		{
			Name: "_lastUpdated paged",
			Path: func(s *Sample) string {
				return is + "?_count=" + strconv.Itoa(pageSize) + "&_lastUpdated=ge" + lastUpdated(s).Format("2006-01-02T15:04:05Z") + "&_sort=_lastUpdated"
			},
			Count: pageSize,
			Paged: true,
			SQL: selectCols + `, (r.last_updated)::text FROM resource r WHERE r.type = $1 AND NOT r.deleted` +
				` AND (r.last_updated >= $2)` +
				` ORDER BY r.last_updated ASC, r.rid ASC LIMIT $3`,
			Args: func(s *Sample) []any { return []any{is, lastUpdated(s), pageSize + 1} },
			NextSQL: selectCols + `, (r.last_updated)::text FROM resource r WHERE r.type = $1 AND NOT r.deleted` +
				` AND (r.last_updated >= $2)` +
				` AND (r.last_updated >= $6::timestamptz AND ((r.last_updated > $3::timestamptz) OR (r.last_updated = $4::timestamptz AND r.rid > $5)))` +
				` ORDER BY r.last_updated ASC, r.rid ASC LIMIT $7`,
			NextArgs: func(s *Sample, key string, rid int64) []any {
				return []any{is, lastUpdated(s), key, key, rid, key, pageSize + 1}
			},
		},
	}
}
