package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// CountStudies returns the number of current ImagingStudy resources.
func CountStudies(ctx context.Context, db *pgxpool.Pool) (int, error) {
	var n int
	err := db.QueryRow(ctx, `SELECT count(*) FROM resource WHERE type = 'ImagingStudy' AND NOT deleted`).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count studies: %w", err)
	}
	return n, nil
}

// Analyze refreshes planner statistics and the visibility map after a load
// (autovacuum would get there eventually; the measurement should not depend
// on when).
func Analyze(ctx context.Context, db *pgxpool.Pool) error {
	if _, err := db.Exec(ctx, `VACUUM (ANALYZE) resource, idx_token, idx_string, idx_date, idx_ref, idx_number`); err != nil {
		return fmt.Errorf("vacuum analyze: %w", err)
	}
	return nil
}

// NeedsVacuum reports whether the store's tables have many rows written since
// they were last vacuumed or analyzed (a finished, interrupted or resumed
// load).
func NeedsVacuum(ctx context.Context, db *pgxpool.Pool) (bool, error) {
	var n int64
	err := db.QueryRow(ctx, `SELECT coalesce(sum(n_ins_since_vacuum + n_mod_since_analyze), 0) FROM pg_stat_user_tables
		WHERE relname IN ('resource', 'idx_token', 'idx_string', 'idx_date', 'idx_ref', 'idx_number')`).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("vacuum statistics: %w", err)
	}
	// A few hundred rows of a load can reach the statistics after the
	// VACUUM that followed it.
	return n > 10000, nil
}

// AnalyzeStats refreshes planner statistics only (what autovacuum's
// analyze does while a table grows).
func AnalyzeStats(ctx context.Context, db *pgxpool.Pool) error {
	if _, err := db.Exec(ctx, `ANALYZE resource, idx_token, idx_string, idx_date, idx_ref, idx_number`); err != nil {
		return fmt.Errorf("analyze: %w", err)
	}
	return nil
}

// LoadedMRNs reports which of mrns are identifiers of stored patients.
//
// The system is compared here, not in SQL: with "system = $1 AND code =
// ANY($2)" the planner underestimates (type, param, system) and scans every
// MRN through idx_token_system (38 s for 2,000 MRNs at 543,726 studies);
// joined on the code alone, it reads idx_token_lookup only (0.4 s).
func LoadedMRNs(ctx context.Context, db *pgxpool.Pool, mrns []string) (map[string]bool, error) {
	rows, err := db.Query(ctx, `SELECT x.code, x.system FROM unnest($1::text[]) AS m(code)
		JOIN idx_token x ON x.type = 'Patient' AND x.param = 'identifier' AND x.code = m.code`, mrns)
	if err != nil {
		return nil, fmt.Errorf("loaded patients: %w", err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var code, system string
		if err := rows.Scan(&code, &system); err != nil {
			return nil, fmt.Errorf("loaded patients: %w", err)
		}
		if system == SystemMRN {
			out[code] = true
		}
	}
	return out, rows.Err()
}

// AutovacuumOn reports whether the server runs autovacuum.
func AutovacuumOn(ctx context.Context, db *pgxpool.Pool) (bool, error) {
	var on bool
	if err := db.QueryRow(ctx, `SELECT current_setting('autovacuum')::bool`).Scan(&on); err != nil {
		return false, fmt.Errorf("autovacuum setting: %w", err)
	}
	return on, nil
}

// Samples picks n random studies (seeded, so a rerun on the same database
// asks the same questions) and what the searches need to find them.
func Samples(ctx context.Context, db *pgxpool.Pool, n int, seed uint64) ([]*Sample, error) {
	var lo, hi int64
	err := db.QueryRow(ctx, `SELECT coalesce(min(rid), 0), coalesce(max(rid), 0) FROM resource WHERE type = 'ImagingStudy'`).Scan(&lo, &hi)
	if err != nil {
		return nil, fmt.Errorf("samples: %w", err)
	}
	if hi == 0 {
		return nil, fmt.Errorf("samples: no ImagingStudy loaded")
	}
	rng := rand.New(rand.NewPCG(seed, 0x5a3b1e))
	var out []*Sample
	seen := map[int64]bool{}
	for attempt := 0; len(out) < n && attempt < 20; attempt++ {
		var rids []int64
		for range 2 * (n - len(out)) {
			if rid := lo + rng.Int64N(hi-lo+1); !seen[rid] {
				seen[rid] = true
				rids = append(rids, rid)
			}
		}
		rows, err := db.Query(ctx, `SELECT rid, id, last_updated, body FROM resource
			WHERE rid = ANY($1) AND type = 'ImagingStudy' AND NOT deleted`, rids)
		if err != nil {
			return nil, fmt.Errorf("samples: %w", err)
		}
		byRID := map[int64]*Sample{}
		for rows.Next() {
			var rid int64
			var body string
			s := &Sample{}
			if err := rows.Scan(&rid, &s.StudyID, &s.LastUpdated, &body); err != nil {
				rows.Close()
				return nil, fmt.Errorf("samples: %w", err)
			}
			var st struct {
				Identifier []identifier `json:"identifier"`
				Subject    reference    `json:"subject"`
			}
			if err := json.Unmarshal([]byte(body), &st); err != nil {
				rows.Close()
				return nil, fmt.Errorf("samples: study %s: %w", s.StudyID, err)
			}
			for _, id := range st.Identifier {
				if id.System == SystemDICOMUID {
					s.StudyUID = strings.TrimPrefix(id.Value, "urn:oid:")
				}
			}
			s.PatientID = strings.TrimPrefix(st.Subject.Reference, "Patient/")
			if s.StudyUID != "" && s.PatientID != st.Subject.Reference {
				byRID[rid] = s
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("samples: %w", err)
		}
		for _, rid := range rids { // keep the seeded order
			if s := byRID[rid]; s != nil && len(out) < n {
				out = append(out, s)
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("samples: no usable study found")
	}
	return out, addMRNs(ctx, db, out)
}

func addMRNs(ctx context.Context, db *pgxpool.Pool, samples []*Sample) error {
	ids := make([]string, len(samples))
	for i, s := range samples {
		ids[i] = s.PatientID
	}
	rows, err := db.Query(ctx, `SELECT id, body FROM resource WHERE type = 'Patient' AND id = ANY($1)`, ids)
	if err != nil {
		return fmt.Errorf("samples: patients: %w", err)
	}
	defer rows.Close()
	mrn := map[string]string{}
	for rows.Next() {
		var id, body string
		if err := rows.Scan(&id, &body); err != nil {
			return fmt.Errorf("samples: patients: %w", err)
		}
		var p struct {
			Identifier []identifier `json:"identifier"`
		}
		if err := json.Unmarshal([]byte(body), &p); err != nil {
			return fmt.Errorf("samples: patient %s: %w", id, err)
		}
		for _, x := range p.Identifier {
			if x.System == SystemMRN {
				mrn[id] = x.Value
			}
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("samples: patients: %w", err)
	}
	for _, s := range samples {
		if s.MRN = mrn[s.PatientID]; s.MRN == "" {
			return fmt.Errorf("samples: patient %s has no MRN", s.PatientID)
		}
	}
	return nil
}

// Explain returns EXPLAIN (ANALYZE, BUFFERS) of q's SQL for s, and of the
// next-page SQL for a paged query.
func Explain(ctx context.Context, db *pgxpool.Pool, q *Query, s *Sample) (string, error) {
	plan := func(sql string, args []any) (string, error) {
		rows, err := db.Query(ctx, "EXPLAIN (ANALYZE, BUFFERS) "+sql, args...)
		if err != nil {
			return "", fmt.Errorf("explain %s: %w", q.Name, err)
		}
		defer rows.Close()
		var lines []string
		for rows.Next() {
			var l string
			if err := rows.Scan(&l); err != nil {
				return "", fmt.Errorf("explain %s: %w", q.Name, err)
			}
			lines = append(lines, l)
		}
		return strings.Join(lines, "\n"), rows.Err()
	}
	out, err := plan(q.SQL, q.Args(s))
	if err != nil || !q.Paged {
		return out, err
	}
	// Continue from the last row of the first page, as a next link would.
	var key string
	var rid int64
	err = db.QueryRow(ctx, `SELECT k, rid FROM (`+q.SQL+`) AS p(rid, id, version, last_updated, body, k) OFFSET $`+
		strconv.Itoa(len(q.Args(s))+1)+` LIMIT 1`, append(q.Args(s), q.Count-1)...).Scan(&key, &rid)
	if err != nil {
		return out, fmt.Errorf("explain %s: next page: %w", q.Name, err)
	}
	next, err := plan(q.NextSQL, q.NextArgs(s, key, rid))
	return out + "\n\n-- next page\n" + next, err
}

// Relation is the on-disk size of a table or index.
type Relation struct {
	Name  string
	Table string
	Rows  int64 // estimated, tables only
	Bytes int64
}

// Sizes lists the tables of the FHIR store and their indexes.
func Sizes(ctx context.Context, db *pgxpool.Pool) ([]Relation, error) {
	rows, err := db.Query(ctx, `
		SELECT c.relname, coalesce(t.relname, c.relname), CASE WHEN c.relkind = 'r' THEN c.reltuples::bigint ELSE 0 END,
		       pg_relation_size(c.oid)
		FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
		LEFT JOIN pg_index i ON i.indexrelid = c.oid
		LEFT JOIN pg_class t ON t.oid = i.indrelid
		WHERE c.relkind IN ('r', 'i') AND coalesce(t.relname, c.relname) IN
		      ('resource', 'resource_history', 'idx_token', 'idx_string', 'idx_date', 'idx_ref', 'idx_number')
		ORDER BY 2, c.relkind DESC, 1`)
	if err != nil {
		return nil, fmt.Errorf("sizes: %w", err)
	}
	defer rows.Close()
	var out []Relation
	for rows.Next() {
		var r Relation
		if err := rows.Scan(&r.Name, &r.Table, &r.Rows, &r.Bytes); err != nil {
			return nil, fmt.Errorf("sizes: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// DatabaseBytes is the size of the current database.
func DatabaseBytes(ctx context.Context, db *pgxpool.Pool) (int64, error) {
	var n int64
	err := db.QueryRow(ctx, `SELECT pg_database_size(current_database())`).Scan(&n)
	return n, err
}

// ServerVersion is PostgreSQL's version string and its memory settings.
func ServerVersion(ctx context.Context, db *pgxpool.Pool) (string, error) {
	var v, sb, wm string
	err := db.QueryRow(ctx, `SELECT version(), current_setting('shared_buffers'), current_setting('work_mem')`).Scan(&v, &sb, &wm)
	return fmt.Sprintf("%s; shared_buffers %s, work_mem %s", v, sb, wm), err
}

// outboxBacklog is the number of resource change events not yet relayed
// to JetStream. A load queues one per ImagingStudy, and the relay can lag
// far behind it (600,171 of 1M when the load ended); measuring before it
// catches up measures the searches beside the relay.
func outboxBacklog(ctx context.Context, db *pgxpool.Pool) (int64, error) {
	var n int64
	if err := db.QueryRow(ctx, `SELECT count(*) FROM resource_change_outbox`).Scan(&n); err != nil {
		return 0, fmt.Errorf("change outbox backlog: %w", err)
	}
	return n, nil
}

// WaitOutboxDrained polls the backlog every poll until it is empty or
// timeout has passed (0: one reading), and returns what is left. progress
// is called with each reading that is not empty.
func WaitOutboxDrained(ctx context.Context, db *pgxpool.Pool, timeout, poll time.Duration, progress func(left int64)) (int64, error) {
	deadline := time.Now().Add(timeout)
	for {
		n, err := outboxBacklog(ctx, db)
		if err != nil || n == 0 {
			return n, err
		}
		progress(n)
		if !time.Now().Before(deadline) {
			return n, nil
		}
		select {
		case <-ctx.Done():
			return n, ctx.Err()
		case <-time.After(poll):
		}
	}
}
