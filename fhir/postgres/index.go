package postgres

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"

	"github.com/priorflow/priorflow/fhir"
)

// indexBuffer collects the search index rows of the resources written in a
// transaction and writes them with COPY when the transaction flushes: one
// round trip per table instead of one per value, which is what lets a
// transaction Bundle of studies load at thousands of resources a second.
type indexBuffer struct {
	token, str, date, ref, num [][]any
}

var indexTables = []struct {
	name string
	cols []string
	// types are the columns' SQL types, for the arrays of an unnest.
	types []string
}{
	{"idx_token", []string{"rid", "type", "param", "system", "code"}, []string{"bigint", "text", "text", "text", "text"}},
	{"idx_string", []string{"rid", "type", "param", "norm", "exact"}, []string{"bigint", "text", "text", "text", "text"}},
	{"idx_date", []string{"rid", "type", "param", "lo", "hi"}, []string{"bigint", "text", "text", "timestamptz", "timestamptz"}},
	{"idx_ref", []string{"rid", "type", "param", "target_type", "target_id", "url"}, []string{"bigint", "text", "text", "text", "text", "text"}},
	{"idx_number", []string{"rid", "type", "param", "value"}, []string{"bigint", "text", "text", "numeric"}},
}

// indexInserts are the INSERT ... SELECT FROM unnest statements of
// indexTables, taking one array per column (small flushes).
var indexInserts = func() []string {
	out := make([]string, len(indexTables))
	for i, tbl := range indexTables {
		arrays := make([]string, len(tbl.types))
		for c, typ := range tbl.types {
			arrays[c] = fmt.Sprintf("$%d::%s[]", c+1, typ)
		}
		out[i] = "INSERT INTO " + tbl.name + " (" + strings.Join(tbl.cols, ", ") + ") SELECT * FROM unnest(" + strings.Join(arrays, ", ") + ")"
	}
	return out
}()

// copyRows is the flush size from which COPY pays: below it, one batch of
// INSERT ... unnest for all tables is one round trip where COPY takes two per
// table, which is what a single resource's write mostly costs.
const copyRows = 2000

// append adds rows, made with rid 0 for a resource whose rid was not known
// yet (CreateMany), as the rows of rid.
func (b *indexBuffer) append(rows *indexBuffer, rid int64) {
	for i, dst := range b.tables() {
		for _, r := range *rows.tables()[i] {
			r[0] = rid
			*dst = append(*dst, r)
		}
	}
}

func (b *indexBuffer) add(rt *fhir.ResourceType, rid int64, res proto.Message, base string) {
	for _, p := range rt.Params {
		b.addParam(rt, rid, p, p.Values(res), base)
	}
}

// addParam adds the rows of rid for the values vals of rt's parameter p;
// base is the server's FHIR base, under which absolute references are
// local.
func (b *indexBuffer) addParam(rt *fhir.ResourceType, rid int64, p *fhir.SearchParam, vals []fhir.Value, base string) {
	for _, v := range vals {
		switch p.Type {
		case fhir.ParamToken:
			b.token = append(b.token, []any{rid, rt.Name, p.Name, v.Token.System, v.Token.Code})
		case fhir.ParamString, fhir.ParamURI:
			b.str = append(b.str, []any{rid, rt.Name, p.Name, fhir.NormalizeString(v.String), v.String})
		case fhir.ParamDate:
			b.date = append(b.date, []any{rid, rt.Name, p.Name, v.Date.Start, v.Date.End})
		case fhir.ParamReference:
			// An absolute URL on another server is indexed by URL only,
			// or patient=Patient/1 would match another site's Patient/1.
			r := v.Ref.Local(base)
			b.ref = append(b.ref, []any{rid, rt.Name, p.Name, r.Type, r.ID, r.URL})
		case fhir.ParamNumber:
			b.num = append(b.num, []any{rid, rt.Name, p.Name, v.Number})
		}
	}
}

// drop forgets buffered rows of rid (its resource was replaced again in the
// same transaction).
func (b *indexBuffer) drop(rid int64) {
	for _, rows := range b.tables() {
		kept := (*rows)[:0]
		for _, r := range *rows {
			if r[0].(int64) != rid {
				kept = append(kept, r)
			}
		}
		*rows = kept
	}
}

func (b *indexBuffer) tables() []*[][]any {
	return []*[][]any{&b.token, &b.str, &b.date, &b.ref, &b.num}
}

// flush writes the buffered search index rows and the deferred statements
// (Defer).
func (t *Tx) flush(ctx context.Context) error {
	total := 0
	for _, rows := range t.ix.tables() {
		total += len(*rows)
	}
	b := &pgx.Batch{}
	if total >= copyRows {
		for i, rows := range t.ix.tables() {
			if len(*rows) == 0 {
				continue
			}
			tbl := indexTables[i]
			if _, err := t.tx.CopyFrom(ctx, pgx.Identifier{tbl.name}, tbl.cols, pgx.CopyFromRows(*rows)); err != nil {
				return fmt.Errorf("write %s: %w", tbl.name, err)
			}
			*rows = nil
		}
	}
	for i, rows := range t.ix.tables() {
		if len(*rows) > 0 {
			b.Queue(indexInserts[i], columns(*rows)...)
		}
	}
	for _, d := range t.deferred {
		b.Queue(d.sql, d.args...)
	}
	if b.Len() == 0 {
		return nil
	}
	if err := t.tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("write search index and deferred writes: %w", err)
	}
	for _, rows := range t.ix.tables() {
		*rows = nil
	}
	t.deferred = nil
	return nil
}

func queueIndexDelete(b *pgx.Batch, rid int64) {
	for _, tbl := range indexTables {
		b.Queue("DELETE FROM "+tbl.name+" WHERE rid = $1", rid)
	}
}

// columns turns rows into one slice per column, typed for pgx to encode as
// the arrays of an unnest.
func columns(rows [][]any) []any {
	cols := make([]any, len(rows[0]))
	for c := range cols {
		switch rows[0][c].(type) {
		case int64:
			cols[c] = column[int64](rows, c)
		case string:
			cols[c] = column[string](rows, c)
		case time.Time:
			cols[c] = column[time.Time](rows, c)
		case float64:
			cols[c] = column[float64](rows, c)
		default:
			panic(fmt.Sprintf("search index column of type %T", rows[0][c]))
		}
	}
	return cols
}

func column[T any](rows [][]any, c int) []T {
	v := make([]T, len(rows))
	for i, r := range rows {
		v[i] = r[c].(T)
	}
	return v
}
