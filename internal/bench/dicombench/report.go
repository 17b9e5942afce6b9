package dicombench

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/priorflow/priorflow/internal/bench"
)

// Goals of the archive benchmark (docs/performance.md).
const (
	GoalIngestRatio = 3.0 // Priorflow STOW-RS instances/s ≥ 3 × Orthanc's
	GoalQIDORatio   = 0.1 // Priorflow QIDO p50 ≤ 1/10 of Orthanc's
)

// Results are the figures of one run.
type Results struct {
	Subject, Reference string // server names: Priorflow, Orthanc
	Machine            []string
	Settings           []string
	Corpus             *Corpus
	Plan               Plan
	Ingest             map[string]*IngestResult // STOW-RS, by server
	Native             *IngestResult            // Orthanc POST /instances
	QIDO               map[string]bench.Stats
	WADO               map[string]*Throughput // by server, and Disk
	Notes              []string
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond)) }

func ratio(a, b float64) string {
	if b == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f", a/b)
}

func verdict(ok bool) string {
	if ok {
		return "**met**"
	}
	return "**missed**"
}

// IngestMet reports whether the ingest goal is met.
func (r *Results) IngestMet() bool {
	s, o := r.Ingest[r.Subject], r.Ingest[r.Reference]
	return s != nil && o != nil && s.PerSecond() >= GoalIngestRatio*o.PerSecond()
}

// QIDOMet reports whether the QIDO goal is met (p50).
func (r *Results) QIDOMet() bool {
	s, o := r.QIDO[r.Subject], r.QIDO[r.Reference]
	return s.N > 0 && o.N > 0 && float64(s.P50) <= GoalQIDORatio*float64(o.P50)
}

// WriteMarkdown writes the results as the Markdown of docs/performance.md.
func (r *Results) WriteMarkdown(w io.Writer) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	s, o := r.Subject, r.Reference
	for _, m := range r.Machine {
		p("- %s\n", m)
	}
	large := r.Corpus.Large()
	li, lb := 0, int64(0)
	for _, st := range large {
		li += len(st.Files)
		lb += st.Bytes
	}
	p("- corpus: %d instances (%.2f GB) in %d studies of %d patients; %d large studies of %d instances (%.1f MB each) for WADO-RS\n",
		r.Corpus.Instances(), float64(r.Corpus.Bytes())/1e9, len(r.Corpus.Studies), len(r.Corpus.PatientStudies()),
		len(large), li/max(len(large), 1), float64(lb)/1e6/float64(max(len(large), 1)))
	for _, x := range r.Settings {
		p("- %s\n", x)
	}
	p("\n| measure | %s | %s | %s/%s | goal |\n|---|---:|---:|---:|---|\n", s, o, s, o)
	is, ir := r.Ingest[s], r.Ingest[o]
	if is != nil && ir != nil {
		p("| STOW-RS ingest, instances/s | %.0f | %.0f | %s | ≥ %.0f: %s |\n", is.PerSecond(), ir.PerSecond(),
			ratio(is.PerSecond(), ir.PerSecond()), GoalIngestRatio, verdict(r.IngestMet()))
		p("| STOW-RS ingest, MB/s | %.1f | %.1f | %s | |\n", is.MBPerSecond(), ir.MBPerSecond(), ratio(is.MBPerSecond(), ir.MBPerSecond()))
		p("| STOW-RS ingest, wall time | %s | %s | | |\n", is.Elapsed.Round(100*time.Millisecond), ir.Elapsed.Round(100*time.Millisecond))
	}
	if r.Native != nil && is != nil {
		p("| %s native `POST /instances`, instances/s (reference) | | %.0f | %s | |\n", o, r.Native.PerSecond(), ratio(is.PerSecond(), r.Native.PerSecond()))
	}
	qs, qo := r.QIDO[s], r.QIDO[o]
	if qs.N > 0 && qo.N > 0 {
		p("| QIDO-RS `studies?PatientID=`, p50 ms | %s | %s | %s | ≤ %.2f: %s |\n", ms(qs.P50), ms(qo.P50),
			ratio(float64(qs.P50), float64(qo.P50)), GoalQIDORatio, verdict(r.QIDOMet()))
		p("| QIDO-RS, p99 ms | %s | %s | %s | |\n", ms(qs.P99), ms(qo.P99), ratio(float64(qs.P99), float64(qo.P99)))
		p("| QIDO-RS, requests/s (%d each) | %.0f | %.0f | %s | |\n", qs.N, qs.PerSec, qo.PerSec, ratio(qs.PerSec, qo.PerSec))
	}
	ws, wo, wd := r.WADO[s], r.WADO[o], r.WADO[Disk]
	if ws != nil && wo != nil && wd != nil {
		p("| WADO-RS whole study, MB/s | %.0f | %.0f | %s | |\n", ws.MBPerSecond(), wo.MBPerSecond(), ratio(ws.MBPerSecond(), wo.MBPerSecond()))
		p("| WADO-RS, one study p50 / p99 ms | %s / %s | %s / %s | %s | |\n", ms(ws.PerStudy.P50), ms(ws.PerStudy.P99),
			ms(wo.PerStudy.P50), ms(wo.PerStudy.P99), ratio(float64(ws.PerStudy.P50), float64(wo.PerStudy.P50)))
		p("| WADO-RS share of the disk ceiling | %.0f %% | %.0f %% | | |\n", 100*ws.MBPerSecond()/wd.MBPerSecond(), 100*wo.MBPerSecond()/wd.MBPerSecond())
		p("| ceiling: plain read of the same files, MB/s | %.0f | | | |\n", wd.MBPerSecond())
	}
	for _, n := range r.Notes {
		p("\n%s\n", n)
	}
}

// Markers around the generated part of docs/performance.md.
const (
	BeginMarker = "<!-- dicombench:results:begin -->"
	EndMarker   = "<!-- dicombench:results:end -->"
)

// UpdateDoc replaces what lies between BeginMarker and EndMarker in the
// Markdown file at path with md. A file without both markers is left alone.
func UpdateDoc(path string, md []byte) error {
	return ReplaceBetween(path, BeginMarker, EndMarker, md)
}

// ReplaceBetween replaces what lies between the markers begin and end in
// the Markdown file at path with md. A file without both markers is left
// alone.
func ReplaceBetween(path, begin, end string, md []byte) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("update %s: %w", path, err)
	}
	i := bytes.Index(b, []byte(begin))
	j := bytes.Index(b, []byte(end))
	if i < 0 || j < i {
		return errors.New("update " + path + ": the markers " + begin + " and " + end + " are missing")
	}
	var out bytes.Buffer
	out.Write(b[:i+len(begin)])
	out.WriteString("\n")
	out.Write(bytes.TrimSpace(md))
	out.WriteString("\n")
	out.Write(b[j:])
	if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
		return fmt.Errorf("update %s: %w", path, err)
	}
	return nil
}
