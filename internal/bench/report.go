package bench

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// Goals are the product's targets at 1,000,000 studies on the 2-core machine.
var Goals = struct {
	P50, P99      time.Duration
	Overhead      time.Duration // FHIR p50 minus SQL p50
	StudiesPerSec float64
}{2 * time.Millisecond, 10 * time.Millisecond, time.Millisecond, 3000}

// Report is everything one run measured.
type Report struct {
	Studies  int
	Machine  []string // lines describing the machine
	Settings []string // lines describing the run
	Load     *LoadResult
	Results  []*Result
	Plans    map[string]string
	Sizes    []Relation
	DBBytes  int64
}

func ms(d time.Duration) string { return fmt.Sprintf("%.3f", float64(d)/float64(time.Millisecond)) }

func mark(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

// WriteMarkdown writes r as the Markdown that docs/performance.md quotes.
func (r *Report) WriteMarkdown(w io.Writer) {
	p := func(format string, a ...any) { fmt.Fprintf(w, format+"\n", a...) }
	p("## Run: %d ImagingStudy", r.Studies)
	p("")
	for _, l := range r.Machine {
		p("- %s", l)
	}
	for _, l := range r.Settings {
		p("- %s", l)
	}
	p("")
	if l := r.Load; l != nil {
		p("### Bulk load")
		p("")
		p("| studies | patients | bundles | MB sent | elapsed | studies/s | bundle p50 ms | bundle p99 ms | goal ≥ %.0f/s |", Goals.StudiesPerSec)
		p("|---:|---:|---:|---:|---:|---:|---:|---:|---|")
		p("| %d | %d | %d | %.0f | %s | %.0f | %s | %s | %s |", l.Studies, l.Patients, l.Bundles, float64(l.Bytes)/1e6,
			l.Elapsed.Round(time.Second), l.StudiesPerSecond(), ms(l.BundleLatency.P50), ms(l.BundleLatency.P99),
			mark(l.StudiesPerSecond() >= Goals.StudiesPerSec))
		p("")
	}
	p("### Search latency (FHIR over HTTP beside the same SQL through pgx)")
	p("")
	p("Times in ms. Ratio is FHIR p50 / SQL p50; Δp50 is the FHIR layer's cost. Goals: p50 ≤ %s, p99 ≤ %s, Δp50 ≤ %s.",
		ms(Goals.P50), ms(Goals.P99), ms(Goals.Overhead))
	p("")
	p("| query | n | rows | KB | FHIR p50 | FHIR p99 | FHIR req/s | SQL p50 | SQL p99 | SQL req/s | p50 ratio | p99 ratio | Δp50 | goals |")
	p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
	for _, x := range r.Results {
		f, s := x.FHIR, x.SQL
		var missed []string
		if f.P50 > Goals.P50 {
			missed = append(missed, "p50")
		}
		if f.P99 > Goals.P99 {
			missed = append(missed, "p99")
		}
		if f.P50-s.P50 > Goals.Overhead {
			missed = append(missed, "Δp50")
		}
		goal := "met"
		if len(missed) > 0 {
			goal = "MISSED " + strings.Join(missed, ", ")
		}
		p("| `%s` | %d | %.1f | %.1f | %s | %s | %.0f | %s | %s | %.0f | %.1f | %.1f | %s | %s |",
			x.Query.Name, f.N, x.Rows, float64(x.Bytes)/1024, ms(f.P50), ms(f.P99), f.PerSec, ms(s.P50), ms(s.P99), s.PerSec,
			ratio(f.P50, s.P50), ratio(f.P99, s.P99), ms(f.P50-s.P50), goal)
	}
	p("")
	for _, x := range r.Results {
		p("- `%s`: `%s`; %d samples returned identical ids through FHIR and SQL", x.Query.Name, x.Query.Path(exampleSample), x.Verified)
	}
	p("")
	if len(r.Sizes) > 0 {
		p("### Storage (database %.0f MB)", float64(r.DBBytes)/1e6)
		p("")
		p("| table | relation | rows (est.) | MB |")
		p("|---|---|---:|---:|")
		for _, s := range r.Sizes {
			rows := ""
			if s.Name == s.Table {
				rows = fmt.Sprint(s.Rows)
			}
			p("| %s | %s | %s | %.0f |", s.Table, s.Name, rows, float64(s.Bytes)/1e6)
		}
		p("")
	}
	if len(r.Plans) > 0 {
		p("### Plans (EXPLAIN (ANALYZE, BUFFERS) of the raw SQL, first sample)")
		p("")
		for _, x := range r.Results {
			if pl, ok := r.Plans[x.Query.Name]; ok {
				p("`%s`:", x.Query.Name)
				p("")
				p("```sql")
				p("%s", x.Query.SQL)
				if x.Query.Paged {
					p("-- next page")
					p("%s", x.Query.NextSQL)
				}
				p("```")
				p("")
				p("```")
				p("%s", pl)
				p("```")
				p("")
			}
		}
	}
}

var exampleSample = &Sample{PatientID: "{id}", MRN: "{MRN}", StudyUID: "{StudyInstanceUID}",
	LastUpdated: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}

func ratio(a, b time.Duration) float64 {
	if b <= 0 {
		return 0
	}
	return float64(a) / float64(b)
}
