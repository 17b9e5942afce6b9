package dicomweb

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/priorflow/priorflow/archive"
)

// errBadQuery wraps every reason a QIDO-RS request is refused with 400.
var errBadQuery = errors.New("bad QIDO-RS query")

// matchKey is an attribute QIDO-RS can match on (PS3.18 10.6.1.2.1,
// Table 6.7.1-1) and how its value goes into an archive.Query.
type matchKey struct {
	keyword string
	tag     tag.Tag
	level   archive.Level
	set     func(q *archive.Query, v string) error
}

// matchKeys are the supported match keys: the required ones of PS3.18
// Table 6.7.1-1 that the index holds. A key of a lower level than the
// search's is refused (relational queries are optional, PS3.18 10.6.1.2.1).
var matchKeys = []matchKey{
	{"StudyInstanceUID", tag.StudyInstanceUID, archive.LevelStudy, uidList(func(q *archive.Query) *[]string { return &q.StudyInstanceUID })},
	{"PatientID", tag.PatientID, archive.LevelStudy, text(func(q *archive.Query) *string { return &q.PatientID })},
	{"IssuerOfPatientID", tag.IssuerOfPatientID, archive.LevelStudy, text(func(q *archive.Query) *string { return &q.IssuerOfPatientID })},
	{"PatientName", tag.PatientName, archive.LevelStudy, text(func(q *archive.Query) *string { return &q.PatientName })},
	{"PatientBirthDate", tag.PatientBirthDate, archive.LevelStudy, dateRange(func(q *archive.Query) *archive.Range { return &q.PatientBirthDate })},
	{"StudyDate", tag.StudyDate, archive.LevelStudy, dateRange(func(q *archive.Query) *archive.Range { return &q.StudyDate })},
	{"StudyTime", tag.StudyTime, archive.LevelStudy, timeRange(func(q *archive.Query) *archive.Range { return &q.StudyTime })},
	{"AccessionNumber", tag.AccessionNumber, archive.LevelStudy, text(func(q *archive.Query) *string { return &q.AccessionNumber })},
	{"ModalitiesInStudy", tag.ModalitiesInStudy, archive.LevelStudy, codeList(func(q *archive.Query) *[]string { return &q.ModalitiesInStudy })},
	{"ReferringPhysicianName", tag.ReferringPhysicianName, archive.LevelStudy, text(func(q *archive.Query) *string { return &q.ReferringPhysicianName })},
	{"StudyDescription", tag.StudyDescription, archive.LevelStudy, text(func(q *archive.Query) *string { return &q.StudyDescription })},
	{"Modality", tag.Modality, archive.LevelSeries, codeList(func(q *archive.Query) *[]string { return &q.Modality })},
	{"SeriesInstanceUID", tag.SeriesInstanceUID, archive.LevelSeries, uidList(func(q *archive.Query) *[]string { return &q.SeriesInstanceUID })},
	{"SOPInstanceUID", tag.SOPInstanceUID, archive.LevelInstance, uidList(func(q *archive.Query) *[]string { return &q.SOPInstanceUID })},
	{"SOPClassUID", tag.SOPClassUID, archive.LevelInstance, uidList(func(q *archive.Query) *[]string { return &q.SOPClassUID })},
}

// maxValueLen bounds one match value: the longest VR of a match key (LO,
// PN) allows 64 characters per value, and UID lists get room for 100 UIDs.
const maxValueLen = 6500

func text(field func(*archive.Query) *string) func(*archive.Query, string) error {
	return func(q *archive.Query, v string) error {
		if p := field(q); *p != "" && *p != v {
			return errors.New("given more than once")
		}
		*field(q) = v
		return nil
	}
}

// uidList parses list-of-UID matching values (PS3.18 8.3.4.1: UIDs
// separated by "," or "\"). Repeating the parameter extends the list.
func uidList(field func(*archive.Query) *[]string) func(*archive.Query, string) error {
	return func(q *archive.Query, v string) error {
		for _, u := range splitList(v) {
			if !validUID(u) {
				return fmt.Errorf("%q is not a valid UID", u)
			}
			*field(q) = append(*field(q), u)
		}
		return nil
	}
}

// codeList parses one or more code strings (CS) separated by "," or "\",
// any of which matches.
func codeList(field func(*archive.Query) *[]string) func(*archive.Query, string) error {
	return func(q *archive.Query, v string) error {
		for _, c := range splitList(v) {
			if c == "" || len(c) > 16 || strings.ContainsAny(c, "*?") {
				return fmt.Errorf("%q is not a code string (16 characters at most, no wildcards)", c)
			}
			*field(q) = append(*field(q), c)
		}
		return nil
	}
}

func dateRange(field func(*archive.Query) *archive.Range) func(*archive.Query, string) error {
	return func(q *archive.Query, v string) error {
		r, err := archive.ParseDateRange(v)
		*field(q) = r
		return err
	}
}

func timeRange(field func(*archive.Query) *archive.Range) func(*archive.Query, string) error {
	return func(q *archive.Query, v string) error {
		r, err := archive.ParseTimeRange(v)
		*field(q) = r
		return err
	}
}

func splitList(v string) []string {
	return strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == '\\' })
}

// includes is what an includefield asks to add (PS3.18 8.3.4.3).
type includes struct {
	all  bool
	tags map[tag.Tag]bool
}

// qidoRequest is a parsed QIDO-RS request.
type qidoRequest struct {
	query   archive.Query
	include includes
}

// parseAttributeID resolves a QIDO-RS attribute ID (PS3.18 8.3.4.1): a
// keyword (PS3.6) or a tag as eight hexadecimal digits. A sequence path
// ("00400275.00400009") resolves to its first attribute.
func parseAttributeID(s string) (tag.Tag, string, error) {
	first, _, _ := strings.Cut(s, ".")
	if len(first) == 8 {
		if v, err := strconv.ParseUint(first, 16, 32); err == nil {
			t := tag.Tag{Group: uint16(v >> 16), Element: uint16(v)}
			kw := first
			if info, err := tag.Find(t); err == nil {
				kw = info.Keyword
			}
			return t, kw, nil
		}
	}
	info, err := tag.FindByKeyword(first)
	if err != nil || first == "" {
		return tag.Tag{}, "", fmt.Errorf("%w: %q is neither a DICOM keyword nor a tag", errBadQuery, s)
	}
	return info.Tag, info.Keyword, nil
}

// parseQIDO parses the query parameters of a QIDO-RS search at level
// (PS3.18 8.3.4): match keys, includefield, limit, offset and
// fuzzymatching. Errors wrap errBadQuery and say what is wrong.
func parseQIDO(values url.Values, level archive.Level) (*qidoRequest, error) {
	req := &qidoRequest{include: includes{tags: map[tag.Tag]bool{}}}
	q := &req.query
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	slices.Sort(keys) // deterministic error messages
	for _, k := range keys {
		vs := values[k]
		switch k {
		case "limit", "offset":
			if len(vs) != 1 {
				return nil, fmt.Errorf("%w: %s given more than once", errBadQuery, k)
			}
			n, err := strconv.Atoi(vs[0])
			if err != nil || n < 0 {
				return nil, fmt.Errorf("%w: %s=%q is not a non-negative integer", errBadQuery, k, vs[0])
			}
			if k == "limit" {
				q.Limit = n
				if n == 0 {
					q.Limit = archive.MaxSearchResults
				}
			} else {
				q.Offset = n
			}
			continue
		case "fuzzymatching":
			// Optional (PS3.18 8.3.4.5); accepted and not performed.
			for _, v := range vs {
				if v != "true" && v != "false" {
					return nil, fmt.Errorf("%w: fuzzymatching=%q is neither true nor false", errBadQuery, v)
				}
			}
			continue
		case "includefield":
			for _, v := range vs {
				for _, f := range strings.Split(v, ",") {
					if f == "all" {
						req.include.all = true
						continue
					}
					t, _, err := parseAttributeID(f)
					if err != nil {
						return nil, fmt.Errorf("includefield: %w", err)
					}
					req.include.tags[t] = true
				}
			}
			continue
		}
		t, kw, err := parseAttributeID(k)
		if err != nil {
			return nil, fmt.Errorf("%w (not a match key, nor includefield, limit, offset or fuzzymatching)", err)
		}
		if strings.Contains(k, ".") {
			return nil, fmt.Errorf("%w: matching on sequence attributes (%s) is not supported", errBadQuery, k)
		}
		i := slices.IndexFunc(matchKeys, func(m matchKey) bool { return m.tag == t })
		if i < 0 {
			return nil, fmt.Errorf("%w: %s is not a supported match key; supported are %s", errBadQuery, kw, supportedKeys(level))
		}
		m := matchKeys[i]
		if m.level > level {
			return nil, fmt.Errorf("%w: %s is a %s-level attribute and cannot match in a search for %s", errBadQuery, m.keyword, levelName(m.level), pluralName(level))
		}
		for _, v := range vs {
			// A URI carries text as percent-encoded UTF-8 (RFC 3986
			// 2.5), which is what the index holds; other bytes match
			// nothing, and the database refuses them.
			if !utf8.ValidString(v) {
				return nil, fmt.Errorf("%w: %s value is not UTF-8; percent-encode the UTF-8 bytes of the text (Ü is %%C3%%9C)", errBadQuery, m.keyword)
			}
			if strings.IndexByte(v, 0) >= 0 {
				return nil, fmt.Errorf("%w: %s value holds a NUL character (%%00)", errBadQuery, m.keyword)
			}
			if len(v) > maxValueLen {
				return nil, fmt.Errorf("%w: %s value longer than %d characters", errBadQuery, m.keyword, maxValueLen)
			}
			if err := m.set(q, v); err != nil {
				return nil, fmt.Errorf("%w: %s: %v", errBadQuery, m.keyword, unwrapInvalid(err))
			}
		}
	}
	return req, nil
}

// unwrapInvalid drops the archive's sentinel prefix from a range error.
func unwrapInvalid(err error) string {
	return strings.TrimPrefix(err.Error(), archive.ErrInvalidQuery.Error()+": ")
}

func supportedKeys(level archive.Level) string {
	var names []string
	for _, m := range matchKeys {
		if m.level <= level {
			names = append(names, m.keyword)
		}
	}
	return strings.Join(names, ", ")
}

func pluralName(l archive.Level) string {
	switch l {
	case archive.LevelStudy:
		return "studies"
	case archive.LevelSeries:
		return "series"
	}
	return "instances"
}

func levelName(l archive.Level) string {
	switch l {
	case archive.LevelStudy:
		return "study"
	case archive.LevelSeries:
		return "series"
	}
	return "instance"
}
