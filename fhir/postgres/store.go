// Package postgres stores FHIR resources in PostgreSQL: the current version
// of each resource with its JSON as served, superseded versions for history,
// and a search index per parameter type that fhir/search queries compile to.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/protobuf/proto"

	"github.com/priorflow/priorflow/fhir"
	"github.com/priorflow/priorflow/fhir/search"
	"github.com/priorflow/priorflow/internal/database"
	"github.com/priorflow/priorflow/internal/parallel"
)

// Store is the PostgreSQL resource store.
type Store struct {
	pool  *pgxpool.Pool
	reg   *fhir.Registry
	codec *fhir.Codec
	log   *slog.Logger
	now   func() time.Time
	// base is the server's FHIR base URL: absolute references under it
	// are indexed as local ones.
	base string

	// onDelete and onWrite hooks run inside the writing transaction; they
	// are set while wiring, before the store serves requests.
	onDelete map[string]DeleteHook
	onWrite  map[string][]WriteHook
}

// WriteHook runs inside the transaction of every create, update and delete
// of its type, after the new version is written: prev is the version
// replaced (nil on create; Deleted when it was a deletion), next the new one
// (Deleted on delete). Care-event intake uses it to write an outbox row in
// the same commit as the resource, so no event is lost between the two.
type WriteHook func(ctx context.Context, tx *Tx, prev, next *fhir.Resource) error

// OnWrite registers h for writes of typ. Call it before serving.
func (s *Store) OnWrite(typ string, h WriteHook) {
	if s.onWrite == nil {
		s.onWrite = map[string][]WriteHook{}
	}
	s.onWrite[typ] = append(s.onWrite[typ], h)
}

func (t *Tx) runWriteHooks(ctx context.Context, typ string, prev, next *fhir.Resource) error {
	for _, h := range t.s.onWrite[typ] {
		if err := h(ctx, t, prev, next); err != nil {
			return err
		}
	}
	return nil
}

// DeleteHook runs inside the transaction that deletes a resource of the type
// it was registered for, so that data kept beside the resource (the DICOM
// archive behind an ImagingStudy) goes in the same commit.
type DeleteHook func(ctx context.Context, tx *Tx, id string) error

// OnDelete registers h for deletes of typ. Call it before serving.
func (s *Store) OnDelete(typ string, h DeleteHook) {
	if s.onDelete == nil {
		s.onDelete = map[string]DeleteHook{}
	}
	s.onDelete[typ] = h
}

// New returns a store over a migrated database.
func New(pool *pgxpool.Pool, reg *fhir.Registry, codec *fhir.Codec, log *slog.Logger) (*Store, error) {
	if pool == nil || reg == nil || codec == nil || log == nil {
		return nil, errors.New("postgres store: pool, registry, codec and logger are required")
	}
	return &Store{pool: pool, reg: reg, codec: codec, log: log, now: time.Now}, nil
}

// SetBaseURL tells the store the server's FHIR base URL ([base]/fhir), so
// that a reference written as an absolute URL under it is indexed, and
// found, as the local reference it is. Without it such references are
// found only by their URL. Call it before serving.
func (s *Store) SetBaseURL(base string) { s.base = strings.TrimSuffix(base, "/") }

// BaseURL returns the FHIR base URL SetBaseURL gave, "" when none.
func (s *Store) BaseURL() string { return s.base }

// querier is what both the pool and a transaction offer.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
	CopyFrom(ctx context.Context, tableName pgx.Identifier, columnNames []string, rowSrc pgx.CopyFromSource) (int64, error)
}

// Tx is a store transaction: reads see its own writes.
type Tx struct {
	s  *Store
	tx pgx.Tx
	ix indexBuffer

	afterCommit []func()
	deferred    []deferredStatement
}

type deferredStatement struct {
	sql  string
	args []any
}

// Defer queues a write that nothing in the transaction reads back, such as
// an outbox row, to go with the search index rows in the one batch sent
// before the commit (or before a search inside the transaction), instead of
// a round trip of its own: a transaction Bundle of 200 studies made 200.
// Its error, if any, fails the transaction there.
func (t *Tx) Defer(sql string, args ...any) {
	t.deferred = append(t.deferred, deferredStatement{sql, args})
}

// AfterCommit runs fn once the transaction has committed (never when it
// rolls back): for side effects outside the database, such as removing blobs
// whose index rows the transaction deleted.
func (t *Tx) AfterCommit(fn func()) { t.afterCommit = append(t.afterCommit, fn) }

// InTx runs fn in one database transaction. READ COMMITTED is enough: every
// write locks the resource row it changes (SELECT ... FOR UPDATE), and
// conditional operations take an advisory lock on their condition (Lock), so
// concurrent writers serialize exactly where they conflict.
func (s *Store) InTx(ctx context.Context, fn func(*Tx) error) error {
	var t *Tx
	err := database.InTx(ctx, s.pool, pgx.ReadCommitted, func(tx pgx.Tx) error {
		t = &Tx{s: s, tx: tx}
		if err := fn(t); err != nil {
			return err
		}
		return t.flush(ctx)
	})
	if err == nil {
		for _, f := range t.afterCommit {
			f()
		}
	}
	return err
}

// Pool exposes the pool to packages that share the database and must write
// in the same transaction as the FHIR store (see PgxTx).
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// PgxTx exposes the underlying transaction so another store (the DICOM
// archive) can commit its rows atomically with the resources written here.
func (t *Tx) PgxTx() pgx.Tx { return t.tx }

// Lock takes a transaction-scoped advisory lock on key. Conditional creates
// and updates lock their condition so that two concurrent requests with the
// same condition cannot both create.
func (t *Tx) Lock(ctx context.Context, key string) error {
	if _, err := t.tx.Exec(ctx, lockSQL, key); err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	return nil
}

// QueueLock queues Lock(key) in a batch, ahead of the statements it guards.
func (t *Tx) QueueLock(b *pgx.Batch, key string) { b.Queue(lockSQL, key) }

const lockSQL = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))"

// Read returns the current version of a resource.
func (s *Store) Read(ctx context.Context, typ, id string) (*fhir.Resource, error) {
	return read(ctx, s.pool, typ, id)
}

// Read returns the current version of a resource, as this transaction sees it.
func (t *Tx) Read(ctx context.Context, typ, id string) (*fhir.Resource, error) {
	return read(ctx, t.tx, typ, id)
}

func read(ctx context.Context, q querier, typ, id string) (*fhir.Resource, error) {
	r := &fhir.Resource{Type: typ, ID: id}
	var body string
	err := q.QueryRow(ctx,
		`SELECT rid, version, last_updated, deleted, method, body FROM resource WHERE type = $1 AND id = $2`,
		typ, id).Scan(&r.RID, &r.Version, &r.LastUpdated, &r.Deleted, &r.Method, &body)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fhir.Errorf(fhir.KindNotFound, "%s/%s is not known", typ, id)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s/%s: %w", typ, id, err)
	}
	if r.Deleted {
		return r, fhir.Errorf(fhir.KindGone, "%s/%s was deleted", typ, id)
	}
	r.Body = []byte(body)
	return r, nil
}

// VRead returns one version of a resource.
func (s *Store) VRead(ctx context.Context, typ, id string, version int) (*fhir.Resource, error) {
	cur, err := read(ctx, s.pool, typ, id)
	if err != nil && !fhir.IsKind(err, fhir.KindGone) {
		return nil, err
	}
	if cur.Version == version {
		if cur.Deleted {
			return cur, fhir.Errorf(fhir.KindGone, "%s/%s version %d is a deletion", typ, id, version)
		}
		return cur, nil
	}
	r := &fhir.Resource{Type: typ, ID: id, Version: version, RID: cur.RID}
	var body *string
	err = s.pool.QueryRow(ctx,
		`SELECT last_updated, method, body FROM resource_history WHERE rid = $1 AND version = $2`,
		cur.RID, version).Scan(&r.LastUpdated, &r.Method, &body)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fhir.Errorf(fhir.KindNotFound, "%s/%s has no version %d", typ, id, version)
	}
	if err != nil {
		return nil, fmt.Errorf("vread %s/%s/%d: %w", typ, id, version, err)
	}
	if body == nil {
		r.Deleted = true
		return r, fhir.Errorf(fhir.KindGone, "%s/%s version %d is a deletion", typ, id, version)
	}
	r.Body = []byte(*body)
	return r, nil
}

// HistoryOptions narrow a history listing (FHIR R4 3.1.0.8 "history").
type HistoryOptions struct {
	Since time.Time // only versions at or after
	Count int       // at most this many, newest first
}

// History lists versions newest first: of one resource when id is set, of a
// whole type otherwise.
func (s *Store) History(ctx context.Context, typ, id string, opt HistoryOptions) ([]*fhir.Resource, error) {
	if opt.Count <= 0 || opt.Count > search.MaxCount {
		opt.Count = search.DefaultCount
	}
	since := opt.Since
	if since.IsZero() {
		since = fhir.MinTime
	}
	var rows pgx.Rows
	var err error
	if id != "" {
		var rid int64
		err = s.pool.QueryRow(ctx, `SELECT rid FROM resource WHERE type = $1 AND id = $2`, typ, id).Scan(&rid)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, fhir.Errorf(fhir.KindNotFound, "%s/%s is not known", typ, id)
		}
		if err != nil {
			return nil, fmt.Errorf("history %s/%s: %w", typ, id, err)
		}
		rows, err = s.pool.Query(ctx, `
			SELECT r.rid, r.id, h.version, h.last_updated, h.method, h.body
			FROM (SELECT rid, version, last_updated, method, NULLIF(body, '') AS body FROM resource WHERE rid = $1
			      UNION ALL
			      SELECT rid, version, last_updated, method, body FROM resource_history WHERE rid = $1) h
			JOIN resource r ON r.rid = h.rid
			WHERE h.last_updated >= $2
			ORDER BY h.version DESC LIMIT $3`, rid, since, opt.Count)
	} else {
		rows, err = s.pool.Query(ctx, `
			SELECT r.rid, r.id, h.version, h.last_updated, h.method, h.body
			FROM (SELECT rid, version, last_updated, method, NULLIF(body, '') AS body FROM resource WHERE type = $1 AND last_updated >= $2
			      UNION ALL
			      SELECT rid, version, last_updated, method, body FROM resource_history WHERE type = $1 AND last_updated >= $2) h
			JOIN resource r ON r.rid = h.rid
			ORDER BY h.last_updated DESC, h.rid DESC, h.version DESC LIMIT $3`, typ, since, opt.Count)
	}
	if err != nil {
		return nil, fmt.Errorf("history %s: %w", typ, err)
	}
	defer rows.Close()
	var out []*fhir.Resource
	for rows.Next() {
		r := &fhir.Resource{Type: typ}
		var body *string
		if err := rows.Scan(&r.RID, &r.ID, &r.Version, &r.LastUpdated, &r.Method, &body); err != nil {
			return nil, fmt.Errorf("history %s: %w", typ, err)
		}
		if body == nil {
			r.Deleted = true
		} else {
			r.Body = []byte(*body)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("history %s: %w", typ, err)
	}
	return out, nil
}

// Create stores res as a new resource with a server-assigned id.
func (t *Tx) Create(ctx context.Context, res proto.Message) (*fhir.Resource, error) {
	typ := fhir.TypeOf(res)
	if t.s.reg.Type(typ) == nil {
		return nil, fhir.Errorf(fhir.KindNotFound, "resource type %s is not supported", typ)
	}
	return t.CreateAs(ctx, res, uuid.NewString())
}

// CreateAs stores res as a new resource with the given id, assigned by the
// server beforehand (a transaction Bundle resolves urn:uuid references to ids
// before it writes anything).
func (t *Tx) CreateAs(ctx context.Context, res proto.Message, id string) (*fhir.Resource, error) {
	typ := fhir.TypeOf(res)
	if t.s.reg.Type(typ) == nil {
		return nil, fhir.Errorf(fhir.KindNotFound, "resource type %s is not supported", typ)
	}
	res = proto.Clone(res)
	fhir.SetID(res, id)
	return t.insert(ctx, res, typ, id, "POST")
}

// createManyRows bounds the resources of one INSERT of CreateMany, so that
// a statement's parameters stay a few megabytes.
const createManyRows = 500

// CreateMany stores each of res as a new resource with a server-assigned id,
// as Create would one by one, in one round trip per createManyRows
// resources instead of one each: the audit writer stores a hundred
// AuditEvents for one page of a search. The results are in the order of res.
// Printing them is most of the cost and each resource's is its own: workers
// bounds the goroutines that print (0: one per CPU; 1: the caller's only,
// for work that must leave the other CPUs to requests).
// CreateMany takes res over, as fhir.Codec.MarshalOwned does: it sets their
// ids and meta and prints them in place, so the caller must not use them
// afterwards (a retry builds them again). A copy of each was a tenth of the
// audit writer's CPU.
func (t *Tx) CreateMany(ctx context.Context, res []proto.Message, workers int) ([]*fhir.Resource, error) {
	now := t.s.now().UTC().Truncate(time.Microsecond)
	out := make([]*fhir.Resource, 0, len(res))
	rows := make([]indexBuffer, min(len(res), createManyRows))
	for len(res) > 0 {
		chunk := res[:min(len(res), createManyRows)]
		res = res[len(chunk):]
		types, ids, bodies := make([]string, len(chunk)), make([]string, len(chunk)), make([]string, len(chunk))
		rows = rows[:len(chunk)]
		made := make([]*fhir.Resource, len(chunk))
		// Printing is most of the cost. Each worker prints a run of
		// neighbours, which the codec prints faster when they are alike
		// (the AuditEvents of one access), and indexes them faster too.
		n := parallel.Workers(workers)
		runs := min(n, len(chunk))
		err := parallel.Do(n, runs, func(r int) error {
			lo, hi := r*len(chunk)/runs, (r+1)*len(chunk)/runs
			rts := make([]*fhir.ResourceType, hi-lo)
			for i := lo; i < hi; i++ {
				m := chunk[i]
				typ := fhir.TypeOf(m)
				if rts[i-lo] = t.s.reg.Type(typ); rts[i-lo] == nil {
					return fhir.Errorf(fhir.KindNotFound, "resource type %s is not supported", typ)
				}
				id := uuid.NewString()
				fhir.SetID(m, id)
				fhir.SetMeta(m, 1, now)
				types[i], ids[i] = typ, id
			}
			// The index rows are read before the codec prints in place.
			run := fhir.NewRun(chunk[lo:hi])
			first := make([][]fhir.Value, len(rts[0].Params))
			for i := lo; i < hi; i++ {
				rt := rts[i-lo]
				rows[i] = indexBuffer{}
				for k, p := range rt.Params {
					var vals []fhir.Value
					if i > lo && run.SharesValues(i-lo, p) {
						vals = first[k]
					} else {
						vals = p.Values(chunk[i])
					}
					if i == lo {
						first[k] = vals
					}
					rows[i].addParam(rt, 0, p, vals, t.s.base)
				}
			}
			printed, err := t.s.codec.MarshalOwnedRun(run)
			if err != nil {
				return err
			}
			for k, body := range printed {
				i := lo + k
				bodies[i] = string(body)
				made[i] = &fhir.Resource{Type: types[i], ID: ids[i], Version: 1, LastUpdated: now, Method: "POST", Body: body}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		out = append(out, made...)
		got, err := t.tx.Query(ctx, `
			INSERT INTO resource (type, id, version, last_updated, method, body)
			SELECT type, id, 1, $4, 'POST', body FROM unnest($1::text[], $2::text[], $3::text[]) AS r(type, id, body)
			ON CONFLICT (type, id) DO NOTHING
			RETURNING id, rid`, types, ids, bodies, now)
		if err != nil {
			return nil, fmt.Errorf("create %d resources: %w", len(chunk), err)
		}
		rids := make(map[string]int64, len(chunk))
		var id string
		var rid int64
		_, err = pgx.ForEachRow(got, []any{&id, &rid}, func() error {
			rids[id] = rid
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("create %d resources: %w", len(chunk), err)
		}
		for i, r := range made {
			var ok bool
			if r.RID, ok = rids[r.ID]; !ok {
				return nil, fhir.Errorf(fhir.KindConflict, "%s/%s already exists", r.Type, r.ID)
			}
			t.ix.append(&rows[i], r.RID)
		}
		for _, r := range made {
			if err := t.runWriteHooks(ctx, r.Type, nil, r); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

func (t *Tx) insert(ctx context.Context, res proto.Message, typ, id, method string) (*fhir.Resource, error) {
	now := t.s.now().UTC().Truncate(time.Microsecond)
	fhir.SetMeta(res, 1, now)
	body, err := t.s.codec.Marshal(res)
	if err != nil {
		return nil, err
	}
	r := &fhir.Resource{Type: typ, ID: id, Version: 1, LastUpdated: now, Method: method, Body: body}
	err = t.tx.QueryRow(ctx, `
		INSERT INTO resource (type, id, version, last_updated, method, body)
		VALUES ($1, $2, 1, $3, $4, $5)
		ON CONFLICT (type, id) DO NOTHING
		RETURNING rid`, typ, id, now, method, string(body)).Scan(&r.RID)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fhir.Errorf(fhir.KindConflict, "%s/%s already exists", typ, id)
	}
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", typ, err)
	}
	t.ix.add(t.s.reg.Type(typ), r.RID, res, t.s.base)
	if err := t.runWriteHooks(ctx, typ, nil, r); err != nil {
		return nil, err
	}
	return r, nil
}

// Put updates the resource with the id res carries, or creates it with that
// id (update as create, FHIR R4 3.1.0.4). ifMatch, when non-zero, is the
// version the client expects to replace. created reports a create.
func (t *Tx) Put(ctx context.Context, res proto.Message, ifMatch int) (r *fhir.Resource, created bool, err error) {
	typ, id := fhir.TypeOf(res), fhir.ID(res)
	rt := t.s.reg.Type(typ)
	if rt == nil {
		return nil, false, fhir.Errorf(fhir.KindNotFound, "resource type %s is not supported", typ)
	}
	if !fhir.ValidID(id) {
		return nil, false, fhir.Errorf(fhir.KindInvalid, "%q is not a valid id", id).At(typ + ".id")
	}
	res = proto.Clone(res)
	for attempt := 0; ; attempt++ {
		cur, err := t.lockCurrent(ctx, typ, id)
		if err != nil {
			return nil, false, err
		}
		if cur == nil {
			if ifMatch != 0 {
				return nil, false, fhir.Errorf(fhir.KindPrecondition, "%s/%s does not exist, but If-Match asked for version %d", typ, id, ifMatch)
			}
			r, err := t.insert(ctx, res, typ, id, "PUT")
			if fhir.IsKind(err, fhir.KindConflict) && attempt == 0 {
				continue // created concurrently: now it exists, update it
			}
			return r, err == nil, err
		}
		if rt.ReadOnly {
			return nil, false, fhir.Errorf(fhir.KindNotAllowed, "%s resources cannot be updated", typ)
		}
		if ifMatch != 0 && ifMatch != cur.version {
			return nil, false, fhir.Errorf(fhir.KindPrecondition, "%s/%s is at version %d, not %d (If-Match)", typ, id, cur.version, ifMatch)
		}
		r, err := t.replace(ctx, rt, cur, res, "PUT")
		return r, false, err
	}
}

// current is the locked current row of a resource.
type current struct {
	id          string
	rid         int64
	version     int
	lastUpdated time.Time
	deleted     bool
	method      string
	body        string
}

func (t *Tx) lockCurrent(ctx context.Context, typ, id string) (*current, error) {
	c := &current{id: id}
	err := t.tx.QueryRow(ctx, `
		SELECT rid, version, last_updated, deleted, method, body
		FROM resource WHERE type = $1 AND id = $2 FOR UPDATE`, typ, id).
		Scan(&c.rid, &c.version, &c.lastUpdated, &c.deleted, &c.method, &c.body)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("lock %s/%s: %w", typ, id, err)
	}
	return c, nil
}

// replace moves the current version into history and stores res (or a
// deletion when res is nil) as the next version.
func (t *Tx) replace(ctx context.Context, rt *fhir.ResourceType, cur *current, res proto.Message, method string) (*fhir.Resource, error) {
	now := t.s.now().UTC().Truncate(time.Microsecond)
	if !now.After(cur.lastUpdated) {
		// Keep lastUpdated strictly increasing per resource even when clocks
		// of replicas disagree slightly.
		now = cur.lastUpdated.Add(time.Microsecond)
	}
	r := &fhir.Resource{Type: rt.Name, ID: cur.id, RID: cur.rid, Version: cur.version + 1, LastUpdated: now, Method: method}
	var body string
	if res != nil {
		r.ID = fhir.ID(res)
		fhir.SetMeta(res, r.Version, now)
		b, err := t.s.codec.Marshal(res)
		if err != nil {
			return nil, err
		}
		r.Body, body = b, string(b)
	} else {
		r.Deleted = true
	}
	var oldBody *string
	if !cur.deleted {
		oldBody = &cur.body
	}
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO resource_history (rid, version, type, last_updated, method, body) VALUES ($1, $2, $3, $4, $5, $6)`,
		cur.rid, cur.version, rt.Name, cur.lastUpdated, cur.method, oldBody)
	b.Queue(`UPDATE resource SET version = $2, last_updated = $3, deleted = $4, method = $5, body = $6 WHERE rid = $1`,
		cur.rid, r.Version, now, res == nil, method, body)
	queueIndexDelete(b, cur.rid)
	if err := t.tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, rt.Name, err)
	}
	t.ix.drop(cur.rid)
	if res != nil {
		t.ix.add(rt, cur.rid, res, t.s.base)
	}
	if len(t.s.onWrite[rt.Name]) > 0 {
		prev := &fhir.Resource{Type: rt.Name, ID: cur.id, RID: cur.rid, Version: cur.version, LastUpdated: cur.lastUpdated,
			Deleted: cur.deleted, Method: cur.method}
		if !cur.deleted {
			prev.Body = []byte(cur.body)
		}
		if err := t.runWriteHooks(ctx, rt.Name, prev, r); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Delete deletes a resource (FHIR R4 3.1.0.7): a new version marks it gone,
// its history stays, its index rows go. Deleting a deleted resource is a
// no-op that returns the deletion.
func (t *Tx) Delete(ctx context.Context, typ, id string, ifMatch int) (*fhir.Resource, error) {
	rt := t.s.reg.Type(typ)
	if rt == nil {
		return nil, fhir.Errorf(fhir.KindNotFound, "resource type %s is not supported", typ)
	}
	if rt.ReadOnly {
		return nil, fhir.Errorf(fhir.KindNotAllowed, "%s resources cannot be deleted", typ)
	}
	cur, err := t.lockCurrent(ctx, typ, id)
	if err != nil {
		return nil, err
	}
	if cur == nil {
		return nil, fhir.Errorf(fhir.KindNotFound, "%s/%s is not known", typ, id)
	}
	if ifMatch != 0 && ifMatch != cur.version {
		return nil, fhir.Errorf(fhir.KindPrecondition, "%s/%s is at version %d, not %d (If-Match)", typ, id, cur.version, ifMatch)
	}
	if cur.deleted {
		return &fhir.Resource{Type: typ, ID: id, RID: cur.rid, Version: cur.version, LastUpdated: cur.lastUpdated, Deleted: true, Method: "DELETE"}, nil
	}
	if h := t.s.onDelete[typ]; h != nil {
		if err := h(ctx, t, id); err != nil {
			return nil, err
		}
	}
	return t.replace(ctx, rt, cur, nil, "DELETE")
}

// Search runs a search inside the transaction (for conditional operations).
func (t *Tx) Search(ctx context.Context, q *search.Query) (*search.Result, error) {
	if err := t.flush(ctx); err != nil {
		return nil, err
	}
	return t.s.search(ctx, t.tx, q)
}

// Search runs a search.
func (s *Store) Search(ctx context.Context, q *search.Query) (*search.Result, error) {
	return s.search(ctx, s.pool, q)
}

// Registry returns the registry the store indexes by.
func (s *Store) Registry() *fhir.Registry { return s.reg }

func itoa(n int) string { return strconv.Itoa(n) }

// Codec returns the codec the store prints resources with.
func (s *Store) Codec() *fhir.Codec { return s.codec }
