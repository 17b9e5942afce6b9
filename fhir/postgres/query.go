package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/priorflow/priorflow/fhir"
	"github.com/priorflow/priorflow/fhir/search"
)

// sqlBuilder collects positional arguments; values never enter SQL text.
type sqlBuilder struct {
	args []any
}

func (b *sqlBuilder) arg(v any) string {
	b.args = append(b.args, v)
	return "$" + itoa(len(b.args))
}

// where compiles the clauses of a search on alias (a resource row) into one
// condition.
func (b *sqlBuilder) where(alias string, typ *fhir.ResourceType, clauses []search.Clause) string {
	conds := []string{alias + ".type = " + b.arg(typ.Name), "NOT " + alias + ".deleted"}
	for i := range clauses {
		conds = append(conds, b.clause(alias, typ, &clauses[i]))
	}
	return strings.Join(conds, " AND ")
}

func indexTable(t fhir.ParamType) string {
	switch t {
	case fhir.ParamToken:
		return "idx_token"
	case fhir.ParamString, fhir.ParamURI:
		return "idx_string"
	case fhir.ParamDate:
		return "idx_date"
	case fhir.ParamReference:
		return "idx_ref"
	case fhir.ParamNumber:
		return "idx_number"
	}
	panic("no index table for " + string(t))
}

func (b *sqlBuilder) clause(alias string, typ *fhir.ResourceType, c *search.Clause) string {
	p := c.Param
	switch {
	case p == fhir.ParamID:
		return b.idClause(alias, c)
	case p == fhir.ParamLastUpdated:
		if c.Missing != nil {
			return map[bool]string{true: "false", false: "true"}[*c.Missing]
		}
		var ors []string
		for _, v := range c.Values {
			ors = append(ors, b.instantCond(v, alias+".last_updated"))
		}
		return "(" + strings.Join(ors, " OR ") + ")"
	}
	tbl := indexTable(p.Type)
	if c.Missing != nil {
		not := ""
		if *c.Missing {
			not = "NOT "
		}
		return fmt.Sprintf("%sEXISTS (SELECT 1 FROM %s x WHERE x.rid = %s.rid AND x.param = %s)", not, tbl, alias, b.arg(p.Name))
	}
	head := func() string {
		return fmt.Sprintf("SELECT x.rid FROM %s x WHERE x.type = %s AND x.param = %s", tbl, b.arg(typ.Name), b.arg(p.Name))
	}
	if c.Chain != nil {
		inner := b.where("t", b.typeOf(c), []search.Clause{*c.Chain})
		return fmt.Sprintf("%s.rid IN (%s AND x.target_type = %s AND x.target_id IN (SELECT t.id FROM resource t WHERE %s))",
			alias, head(), b.arg(c.TargetType), inner)
	}
	var ors []string
	for _, v := range c.Values {
		ors = append(ors, b.valueCond(p, c, v))
	}
	cond := "(" + strings.Join(ors, " OR ") + ")"
	if c.Modifier == search.ModNot {
		// FHIR :not also matches resources that have no value at all.
		return fmt.Sprintf("NOT EXISTS (SELECT 1 FROM %s x WHERE x.rid = %s.rid AND x.param = %s AND %s)", tbl, alias, b.arg(p.Name), cond)
	}
	return fmt.Sprintf("%s.rid IN (%s AND %s)", alias, head(), cond)
}

// typeOf resolves the chained type; the parser has checked it exists.
func (b *sqlBuilder) typeOf(c *search.Clause) *fhir.ResourceType {
	return &fhir.ResourceType{Name: c.TargetType}
}

func (b *sqlBuilder) idClause(alias string, c *search.Clause) string {
	var ids []string
	for _, v := range c.Values {
		ids = append(ids, v.Token.Code)
	}
	if c.Modifier == search.ModNot {
		return fmt.Sprintf("NOT (%s.id = ANY(%s))", alias, b.arg(ids))
	}
	return fmt.Sprintf("%s.id = ANY(%s)", alias, b.arg(ids))
}

func (b *sqlBuilder) valueCond(p *fhir.SearchParam, c *search.Clause, v search.Value) string {
	switch p.Type {
	case fhir.ParamToken:
		switch {
		case !v.SystemSet:
			return "x.code = " + b.arg(v.Token.Code)
		case v.Token.Code == "":
			return "x.system = " + b.arg(v.Token.System)
		default: // "|code" has System "" and so matches only codes without a system
			return fmt.Sprintf("(x.code = %s AND x.system = %s)", b.arg(v.Token.Code), b.arg(v.Token.System))
		}
	case fhir.ParamString, fhir.ParamURI:
		switch {
		case c.Modifier == search.ModExact || p.Type == fhir.ParamURI:
			return "x.exact = " + b.arg(v.String)
		case c.Modifier == search.ModContains:
			return "x.norm LIKE " + b.arg("%"+likeEscape(fhir.NormalizeString(v.String))+"%")
		default:
			return "x.norm LIKE " + b.arg(likeEscape(fhir.NormalizeString(v.String))+"%")
		}
	case fhir.ParamDate:
		return b.dateCond(v, "x.lo", "x.hi")
	case fhir.ParamReference:
		switch {
		case v.Ref.URL != "":
			return "x.url = " + b.arg(v.Ref.URL)
		case v.Ref.Type != "":
			return fmt.Sprintf("(x.target_id = %s AND x.target_type = %s)", b.arg(v.Ref.ID), b.arg(v.Ref.Type))
		case c.TargetType != "":
			return fmt.Sprintf("(x.target_id = %s AND x.target_type = %s)", b.arg(v.Ref.ID), b.arg(c.TargetType))
		default:
			return "x.target_id = " + b.arg(v.Ref.ID)
		}
	case fhir.ParamNumber:
		ops := map[search.Prefix]string{search.PrefixEq: "=", search.PrefixNe: "<>", search.PrefixGt: ">", search.PrefixLt: "<",
			search.PrefixGe: ">=", search.PrefixLe: "<=", search.PrefixSa: ">", search.PrefixEb: "<", search.PrefixAp: "="}
		return fmt.Sprintf("x.value %s %s", ops[v.Prefix], b.arg(v.Number))
	}
	return "false"
}

// dateCond compares a stored range [lo, hi) with the search range per the
// prefix semantics of FHIR R4 3.1.1.4.2 ("the range above the search value
// intersects the range of the target", etc.), both ranges half-open.
func (b *sqlBuilder) dateCond(v search.Value, lo, hi string) string {
	slo, shi := v.Date.Start, v.Date.End
	a := func(t time.Time) string { return b.arg(t) }
	switch v.Prefix {
	case search.PrefixNe:
		return fmt.Sprintf("NOT (%s >= %s AND %s <= %s)", lo, a(slo), hi, a(shi))
	case search.PrefixGt:
		return fmt.Sprintf("%s > %s", hi, a(shi))
	case search.PrefixLt:
		return fmt.Sprintf("%s < %s", lo, a(slo))
	case search.PrefixGe:
		return fmt.Sprintf("(%s >= %s OR %s > %s)", lo, a(slo), hi, a(shi))
	case search.PrefixLe:
		return fmt.Sprintf("(%s <= %s OR %s < %s)", hi, a(shi), lo, a(slo))
	case search.PrefixSa:
		return fmt.Sprintf("%s >= %s", lo, a(shi))
	case search.PrefixEb:
		return fmt.Sprintf("%s <= %s", hi, a(slo))
	case search.PrefixAp:
		return fmt.Sprintf("(%s < %s AND %s > %s)", lo, a(shi), hi, a(slo))
	}
	return fmt.Sprintf("(%s >= %s AND %s <= %s)", lo, a(slo), hi, a(shi))
}

// instantCond is dateCond for a stored instant at microsecond precision
// (meta.lastUpdated), whose range is [t, t+1µs): the same comparisons,
// simplified so that each is a plain range on the column, which the
// (type, last_updated, rid) index can use; dateCond's "t + 1µs > end"
// form cannot.
func (b *sqlBuilder) instantCond(v search.Value, col string) string {
	slo, shi := v.Date.Start, v.Date.End
	a := func(t time.Time) string { return b.arg(t) }
	switch v.Prefix {
	case search.PrefixNe:
		return fmt.Sprintf("NOT (%s >= %s AND %s < %s)", col, a(slo), col, a(shi))
	case search.PrefixGt, search.PrefixSa: // t+1µs > end, t >= end
		return fmt.Sprintf("%s >= %s", col, a(shi))
	case search.PrefixLt, search.PrefixEb: // t < start, t+1µs <= start
		return fmt.Sprintf("%s < %s", col, a(slo))
	case search.PrefixGe: // t >= start OR t+1µs > end
		return fmt.Sprintf("%s >= %s", col, a(slo))
	case search.PrefixLe: // t+1µs <= end OR t < start
		return fmt.Sprintf("%s < %s", col, a(shi))
	}
	// eq and ap: t >= start AND t+1µs <= end, t < end AND t+1µs > start
	return fmt.Sprintf("(%s >= %s AND %s < %s)", col, a(slo), col, a(shi))
}

func likeEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// sortKey is one ORDER BY key: an SQL expression whose text form orders the
// same way, used both to sort and to build keyset conditions.
type sortKey struct {
	expr string // comparable SQL expression
	cast string // type the cursor's text value is cast back to
	desc bool
	// column is set when expr is a plain column, which an index may order.
	column bool
}

func (b *sqlBuilder) sortKeys(alias string, typ *fhir.ResourceType, sorts []search.Sort) []sortKey {
	var keys []sortKey
	for _, s := range sorts {
		switch s.Param {
		case "_id":
			keys = append(keys, sortKey{expr: alias + ".id", cast: "text", desc: s.Desc, column: true})
		case "_lastUpdated":
			keys = append(keys, sortKey{expr: alias + ".last_updated", cast: "timestamptz", desc: s.Desc, column: true})
		default:
			p := typ.Param(s.Param)
			// Missing values sort last in both directions.
			switch p.Type {
			case fhir.ParamDate:
				agg, null := "min(d.lo)", "'infinity'"
				if s.Desc {
					agg, null = "max(d.hi)", "'-infinity'"
				}
				keys = append(keys, sortKey{
					expr: fmt.Sprintf("COALESCE((SELECT %s FROM idx_date d WHERE d.rid = %s.rid AND d.param = %s), %s::timestamptz)", agg, alias, b.arg(p.Name), null),
					cast: "timestamptz", desc: s.Desc})
			case fhir.ParamToken:
				keys = append(keys, sortKey{
					expr: fmt.Sprintf("COALESCE((SELECT min(d.code) FROM idx_token d WHERE d.rid = %s.rid AND d.param = %s), '')", alias, b.arg(p.Name)),
					cast: "text", desc: s.Desc})
			case fhir.ParamString:
				keys = append(keys, sortKey{
					expr: fmt.Sprintf("COALESCE((SELECT min(d.norm) FROM idx_string d WHERE d.rid = %s.rid AND d.param = %s), '')", alias, b.arg(p.Name)),
					cast: "text", desc: s.Desc})
			}
		}
	}
	return keys
}

// search runs q and returns one page, with its includes.
func (s *Store) search(ctx context.Context, db querier, q *search.Query) (*search.Result, error) {
	b := &sqlBuilder{}
	where := b.where("r", q.Type, q.Clauses)
	res := &search.Result{Total: -1}

	if q.Summary == "count" || q.Total == "accurate" {
		cb := &sqlBuilder{}
		cw := cb.where("r", q.Type, q.Clauses)
		if err := db.QueryRow(ctx, "SELECT count(*) FROM resource r WHERE "+cw, customPlan(cb.args)...).Scan(&res.Total); err != nil {
			return nil, fmt.Errorf("search %s: count: %w", q.Type.Name, err)
		}
		if q.Summary == "count" {
			return res, nil
		}
	}
	if q.Count == 0 {
		return res, nil
	}

	keys := b.sortKeys("r", q.Type, q.Sort)
	before := q.Cursor != nil && q.Cursor.Before
	if q.Cursor != nil {
		if len(q.Cursor.Key) != len(keys) {
			return nil, fhir.Errorf(fhir.KindInvalid, "the paging link does not match the search; start again").At("_cursor")
		}
		where += " AND " + b.keyset(keys, q.Cursor)
	}
	var order, sel []string
	for _, k := range keys {
		desc := k.desc != before
		order = append(order, k.expr+map[bool]string{true: " DESC", false: " ASC"}[desc])
		sel = append(sel, "("+k.expr+")::text")
	}
	order = append(order, "r.rid"+map[bool]string{true: " DESC", false: " ASC"}[before])
	sql := "SELECT r.rid, r.id, r.version, r.last_updated, r.body"
	if len(sel) > 0 {
		sql += ", " + strings.Join(sel, ", ")
	}
	sql += " FROM resource r WHERE " + where + " ORDER BY " + strings.Join(order, ", ") + " LIMIT " + b.arg(q.Count+1)

	rows, err := db.Query(ctx, sql, customPlan(b.args)...)
	if err != nil {
		if q.Cursor != nil && isDataException(err) {
			return nil, fhir.Errorf(fhir.KindInvalid, "the paging link is damaged; start the search again").At("_cursor")
		}
		return nil, fmt.Errorf("search %s: %w", q.Type.Name, err)
	}
	defer rows.Close()
	for rows.Next() {
		r := &fhir.Resource{Type: q.Type.Name, Method: "GET"}
		var body string
		r.SortKey = make([]string, len(keys))
		dest := []any{&r.RID, &r.ID, &r.Version, &r.LastUpdated, &body}
		for i := range r.SortKey {
			dest = append(dest, &r.SortKey[i])
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("search %s: %w", q.Type.Name, err)
		}
		r.Body = []byte(body)
		res.Matches = append(res.Matches, r)
	}
	if err := rows.Err(); err != nil {
		if q.Cursor != nil && isDataException(err) {
			// Only a tampered cursor puts a bad value in a keyset cast.
			return nil, fhir.Errorf(fhir.KindInvalid, "the paging link is damaged; start the search again").At("_cursor")
		}
		return nil, fmt.Errorf("search %s: %w", q.Type.Name, err)
	}
	more := len(res.Matches) > q.Count
	if more {
		res.Matches = res.Matches[:q.Count]
	}
	if before {
		for i, j := 0, len(res.Matches)-1; i < j; i, j = i+1, j-1 {
			res.Matches[i], res.Matches[j] = res.Matches[j], res.Matches[i]
		}
	}
	if n := len(res.Matches); n > 0 {
		first, last := res.Matches[0], res.Matches[n-1]
		if (!before && more) || before {
			res.Next = &search.Cursor{Key: last.SortKey, RID: last.RID}
		}
		if (before && more) || (!before && q.Cursor != nil) {
			res.Prev = &search.Cursor{Key: first.SortKey, RID: first.RID, Before: true}
		}
	}
	if res.Total < 0 && q.Cursor == nil && !more {
		res.Total = len(res.Matches)
	}
	if err := s.includes(ctx, db, q, res); err != nil {
		return nil, err
	}
	return res, nil
}

// customPlan makes pgx run a search as an unnamed statement (its description
// still cached), which PostgreSQL plans for the values bound each time. A
// named prepared statement switches to a generic plan after five runs, and
// the generic plan of a search cannot tell a patient's five studies from
// the fifth of all studies that are CT: for patient=X&modality=CT it drove
// from the modality and took 45 ms at 20,000 studies instead of 0.3 ms.
func customPlan(args []any) []any {
	return append([]any{pgx.QueryExecModeCacheDescribe}, args...)
}

// isDataException reports a PostgreSQL data exception (SQLSTATE class 22),
// such as a value that does not cast to a timestamp.
func isDataException(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && strings.HasPrefix(pgErr.Code, "22")
}

// keyset builds the condition "row comes after (or before) the cursor" in
// the expanded form (k1 > v1) OR (k1 = v1 AND k2 > v2) OR ... that allows a
// different direction per key.
func (b *sqlBuilder) keyset(keys []sortKey, c *search.Cursor) string {
	var ors []string
	for i := 0; i <= len(keys); i++ {
		var ands []string
		for j := 0; j < i; j++ {
			ands = append(ands, fmt.Sprintf("%s = %s::%s", keys[j].expr, b.arg(c.Key[j]), keys[j].cast))
		}
		if i < len(keys) {
			op := ">"
			if keys[i].desc != c.Before {
				op = "<"
			}
			ands = append(ands, fmt.Sprintf("%s %s %s::%s", keys[i].expr, op, b.arg(c.Key[i]), keys[i].cast))
		} else {
			op := ">"
			if c.Before {
				op = "<"
			}
			ands = append(ands, fmt.Sprintf("r.rid %s %s", op, b.arg(c.RID)))
		}
		ors = append(ors, "("+strings.Join(ands, " AND ")+")")
	}
	cond := "(" + strings.Join(ors, " OR ") + ")"
	if len(keys) > 0 && keys[0].column {
		// The OR form hides the range from the planner; the same bound on
		// the first key alone lets an index on it start at the cursor
		// instead of filtering every row before it.
		op := ">="
		if keys[0].desc != c.Before {
			op = "<="
		}
		cond = fmt.Sprintf("(%s %s %s::%s AND %s)", keys[0].expr, op, b.arg(c.Key[0]), keys[0].cast, cond)
	}
	return cond
}

// maxIncluded bounds the included resources of one page.
const maxIncluded = 1000

func (s *Store) includes(ctx context.Context, db querier, q *search.Query, res *search.Result) error {
	if len(res.Matches) == 0 || (len(q.Include) == 0 && len(q.RevInclude) == 0) {
		return nil
	}
	rids := make([]int64, len(res.Matches))
	ids := make([]string, len(res.Matches))
	seen := map[string]bool{}
	for i, m := range res.Matches {
		rids[i], ids[i] = m.RID, m.ID
		seen[m.Type+"/"+m.ID] = true
	}
	collect := func(sql string, args ...any) error {
		rows, err := db.Query(ctx, sql, args...)
		if err != nil {
			return fmt.Errorf("search %s: include: %w", q.Type.Name, err)
		}
		defer rows.Close()
		for rows.Next() {
			r := &fhir.Resource{Method: "GET"}
			var body string
			if err := rows.Scan(&r.RID, &r.Type, &r.ID, &r.Version, &r.LastUpdated, &body); err != nil {
				return fmt.Errorf("search %s: include: %w", q.Type.Name, err)
			}
			if key := r.Type + "/" + r.ID; !seen[key] && len(res.Included) < maxIncluded {
				seen[key] = true
				r.Body = []byte(body)
				res.Included = append(res.Included, r)
			}
		}
		return rows.Err()
	}
	for _, inc := range q.Include {
		sql := `SELECT DISTINCT t.rid, t.type, t.id, t.version, t.last_updated, t.body
			FROM idx_ref x JOIN resource t ON t.type = x.target_type AND t.id = x.target_id AND NOT t.deleted
			WHERE x.rid = ANY($1) AND x.param = $2 AND ($3 = '' OR x.target_type = $3)`
		if err := collect(sql, rids, inc.Param, inc.Target); err != nil {
			return err
		}
	}
	for _, inc := range q.RevInclude {
		sql := `SELECT DISTINCT t.rid, t.type, t.id, t.version, t.last_updated, t.body
			FROM idx_ref x JOIN resource t ON t.rid = x.rid AND NOT t.deleted
			WHERE x.type = $1 AND x.param = $2 AND x.target_type = $3 AND x.target_id = ANY($4)
			LIMIT ` + itoa(maxIncluded)
		if err := collect(sql, inc.Source, inc.Param, q.Type.Name, ids); err != nil {
			return err
		}
	}
	return nil
}

// TokenMatches returns, for each of codes, the current resources of typ
// whose token parameter param holds system|code, oldest first: the search
// typ?param=system|code for many codes in one statement, as the audit
// trail looks up the ImagingStudy of every study a DICOMweb response named.
// Like a search it is planned for its values each time.
func (s *Store) TokenMatches(ctx context.Context, typ, param, system string, codes []string) (map[string][]*fhir.Resource, error) {
	out := map[string][]*fhir.Resource{}
	if len(codes) == 0 {
		return out, nil
	}
	rows, err := s.pool.Query(ctx, `
		SELECT k.code, r.rid, r.id, r.version, r.last_updated, r.body
		FROM unnest($3::text[]) AS k(code)
		JOIN idx_token t ON t.type = $1 AND t.param = $2 AND t.code = k.code AND t.system = $4
		JOIN resource r ON r.rid = t.rid AND NOT r.deleted
		ORDER BY k.code, r.rid`, customPlan([]any{typ, param, codes, system})...)
	if err != nil {
		return nil, fmt.Errorf("look up %s by %s: %w", typ, param, err)
	}
	var code, body string
	r := &fhir.Resource{Type: typ, Method: "GET"}
	_, err = pgx.ForEachRow(rows, []any{&code, &r.RID, &r.ID, &r.Version, &r.LastUpdated, &body}, func() error {
		ms := out[code]
		if n := len(ms); n > 0 && ms[n-1].RID == r.RID {
			return nil // the resource holds the identifier twice
		}
		m := *r
		m.Body = []byte(body)
		out[code] = append(ms, &m)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("look up %s by %s: %w", typ, param, err)
	}
	return out, nil
}

// TokenReferences returns, for each of codes, the references that the
// current resources of typ whose token parameter param holds system|code
// hold under the reference parameter refParam, from the search index alone:
// the audit trail wants the patient of every study a DICOMweb response
// named, and an ImagingStudy's body grows with its instances (a CT study's
// is hundreds of kilobytes). Relative references have Type and ID, absolute
// ones URL only (as indexed).
func (s *Store) TokenReferences(ctx context.Context, typ, param, system string, codes []string, refParam string) (map[string][]fhir.Ref, error) {
	out := map[string][]fhir.Ref{}
	if len(codes) == 0 {
		return out, nil
	}
	rows, err := s.pool.Query(ctx, `
		SELECT k.code, x.target_type, x.target_id, x.url
		FROM unnest($3::text[]) AS k(code)
		JOIN idx_token t ON t.type = $1 AND t.param = $2 AND t.code = k.code AND t.system = $4
		JOIN resource r ON r.rid = t.rid AND NOT r.deleted
		JOIN idx_ref x ON x.rid = r.rid AND x.type = $1 AND x.param = $5
		ORDER BY k.code, r.rid, x.target_type, x.target_id, x.url`, customPlan([]any{typ, param, codes, system, refParam})...)
	if err != nil {
		return nil, fmt.Errorf("look up %s of %s by %s: %w", refParam, typ, param, err)
	}
	var code string
	var ref fhir.Ref
	_, err = pgx.ForEachRow(rows, []any{&code, &ref.Type, &ref.ID, &ref.URL}, func() error {
		if refs := out[code]; len(refs) == 0 || refs[len(refs)-1] != ref {
			out[code] = append(refs, ref)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("look up %s of %s by %s: %w", refParam, typ, param, err)
	}
	return out, nil
}
