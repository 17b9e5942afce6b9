package pullbench

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/priorflow/priorflow/internal/bench"
)

// Goals of issue 6 (docs/performance.md).
const (
	GoalPullRatio   = 1.5                    // Priorflow pull throughput ≥ 1.5 × Orthanc's /retrieve
	GoalOverheadP95 = 250 * time.Millisecond // event to loaded beyond the transfer, p95
	GoalPeakRSS     = 150_000_000            // bytes, during a 2 GB study pull
)

// Markers around the generated part of docs/performance.md.
const (
	BeginMarker = "<!-- pullbench:results:begin -->"
	EndMarker   = "<!-- pullbench:results:end -->"
)

// Totals returns the payload bytes, instances and time of each side over
// all rounds.
func (p *PullResult) Totals() (bytes int64, instances int, priorflow, orthanc time.Duration) {
	for _, r := range p.Rounds {
		bytes += r.Study.Bytes
		instances += r.Study.Instances
		priorflow += r.Priorflow
		orthanc += r.Orthanc
	}
	return bytes, instances, priorflow, orthanc
}

// Ratio is Priorflow's throughput over Orthanc's.
func (p *PullResult) Ratio() float64 {
	_, _, pf, or := p.Totals()
	if pf <= 0 {
		return 0
	}
	return float64(or) / float64(pf)
}

// P95 returns the 95th percentile of the overhead beyond the transfer.
func (o *OverheadResult) P95() time.Duration { return o.percentile(OverheadSample.Overhead, 95) }

func (o *OverheadResult) percentile(f func(OverheadSample) time.Duration, p float64) time.Duration {
	ds := make([]time.Duration, len(o.Samples))
	for i, s := range o.Samples {
		ds[i] = f(s)
	}
	slices.Sort(ds)
	return bench.Percentile(ds, p)
}

func mbps(b int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(b) / 1e6 / d.Seconds()
}

func perSec(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64)
}

func mb(b int64) string { return strconv.FormatFloat(float64(b)/1e6, 'f', 1, 64) }

func verdict(ok bool) string {
	if ok {
		return "**met**"
	}
	return "**missed**"
}

func encodings(es []string) string {
	var out []string
	for _, e := range es {
		if e == "" {
			e = "none"
		}
		out = append(out, "`"+e+"`")
	}
	if len(out) == 0 {
		return "—"
	}
	return strings.Join(out, ", ")
}

// WriteMarkdown writes the results as the Markdown of docs/performance.md;
// machine lists the conditions of the run.
func (r *Results) WriteMarkdown(w io.Writer, machine []string) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	for _, m := range machine {
		p("- %s\n", m)
	}
	for _, s := range r.Settings {
		p("- %s\n", s)
	}
	if pr := r.Pull; pr != nil && len(pr.Rounds) > 0 {
		b, n, pf, or := pr.Totals()
		st := pr.Rounds[0].Study
		cmove := r.Protocol == ProtocolCMove
		reference, goal := "Orthanc `/retrieve`", fmt.Sprintf("≥ %.1f: %s", GoalPullRatio, verdict(pr.Ratio() >= GoalPullRatio))
		if cmove {
			reference, goal = "Orthanc C-MOVE", "(set for WADO-RS)"
		}
		p("\n#### Pull of a %d-instance study (%.0f MB), %d rounds\n\n", st.Instances, float64(st.Bytes)/1e6, len(pr.Rounds))
		p("| measure | Priorflow | %s | Priorflow/Orthanc | goal |\n|---|---:|---:|---:|---|\n", reference)
		p("| throughput, MB/s | %.1f | %.1f | %.2f | %s |\n", mbps(b, pf), mbps(b, or), pr.Ratio(), goal)
		p("| throughput, instances/s | %.0f | %.0f | %.2f | |\n", perSec(n, pf), perSec(n, or), pr.Ratio())
		for i, rd := range pr.Rounds {
			first := "Orthanc"
			if rd.PriorflowFirst {
				first = "Priorflow"
			}
			p("| round %d (%s first), s | %.2f | %.2f | %.2f | |\n", i+1, first, rd.Priorflow.Seconds(), rd.Orthanc.Seconds(),
				rd.Orthanc.Seconds()/max(rd.Priorflow.Seconds(), 1e-9))
		}
		var loaded []time.Duration
		for _, rd := range pr.Rounds {
			loaded = append(loaded, rd.PriorflowLoaded)
		}
		slices.Sort(loaded)
		p("| care event → job completed (whole path), median s | %.2f | | | |\n", bench.Percentile(loaded, 50).Seconds())
		if pr.ReferenceHWM > 0 {
			p("| peak RSS (VmHWM) of the reference Orthanc after its pulls, MB | | %s | | |\n", mb(pr.ReferenceHWM))
		}
		if cmove {
			p("\nPriorflow's time is the retrieval as its worker records it in the Task: from the note written just before the C-MOVE to the note written once the study is complete (every instance spooled, stored in the blob store and indexed, the ImagingStudy made local, Provenance and AuditEvent written); Orthanc's is the synchronous `POST /modalities/source/move`, which returns once the source has sent every instance and Orthanc has stored it.\n")
		} else {
			p("\nPriorflow's time is the retrieval as its worker records it in the Task: from the note written just before the WADO-RS request to the note written once the study is complete (every instance spooled, stored in the blob store and indexed, the ImagingStudy made local, Provenance and AuditEvent written); Orthanc's is the synchronous `POST .../retrieve`, which returns once every instance is stored and indexed.\n")
		}
	}
	if o := r.Overhead; o != nil && len(o.Samples) > 0 {
		p("\n#### Care event to loaded, beyond the transfer (%d one-instance jobs)\n\n", len(o.Samples))
		p("| part | p50 ms | p95 ms | max ms |\n|---|---:|---:|---:|\n")
		rows := []struct {
			name string
			f    func(OverheadSample) time.Duration
		}{
			{"care event → job planned (planner: job row and Task)", func(s OverheadSample) time.Duration { return s.Plan }},
			{"job planned → first request to the source (JetStream, claim, Task note)", func(s OverheadSample) time.Duration { return s.Queue }},
			{"network search (QIDO-RS, selection, remote ImagingStudy) → WADO-RS request", func(s OverheadSample) time.Duration { return s.Search }},
			{"transfer: WADO-RS request → last byte (excluded)", func(s OverheadSample) time.Duration { return s.Transfer }},
			{"last byte → job completed (index, ImagingStudy local, Provenance, AuditEvent, Task)", func(s OverheadSample) time.Duration { return s.Finish }},
			{"care event → job completed (all)", func(s OverheadSample) time.Duration { return s.Total }},
			{"**overhead: all − transfer**", OverheadSample.Overhead},
		}
		for _, row := range rows {
			p("| %s | %s | %s | %s |\n", row.name, ms(o.percentile(row.f, 50)), ms(o.percentile(row.f, 95)), ms(o.percentile(row.f, 100)))
		}
		p("\nGoal: overhead p95 ≤ %s ms: %s (%s ms). Each part's percentiles are taken separately, so they do not add up. Accept-Encoding sent to the source: Priorflow %s; the reference Orthanc %s.\n",
			ms(GoalOverheadP95), verdict(o.P95() <= GoalOverheadP95), ms(o.P95()), encodings(o.AcceptEncodings), encodings(o.ReferenceAcceptEncodings))
	}
	if l := r.Large; l != nil {
		d := l.Job.PullEnd.Sub(l.Job.PullStart)
		p("\n#### Peak memory of the prefetcher during a %.2f GB pull (%d instances of %.1f MB)\n\n", float64(l.Study.Bytes)/1e9, l.Study.Instances,
			float64(l.Study.Bytes)/1e6/float64(l.Study.Instances))
		p("| measure | value | goal |\n|---|---:|---|\n")
		p("| peak RSS (VmHWM) after the pull, MB | %s | ≤ %d: %s |\n", mb(l.HWM), GoalPeakRSS/1_000_000, verdict(l.HWM <= GoalPeakRSS))
		p("| largest VmRSS sample during the pull, MB | %s | |\n", mb(l.MaxRSS))
		p("| peak RSS once started, before the pull, MB | %s | |\n", mb(l.IdleHWM))
		p("| retrieval, s (MB/s) | %.1f (%.1f) | |\n", d.Seconds(), mbps(l.Study.Bytes, d))
		p("| care event → job completed, s | %.1f | |\n", l.Job.Finished.Sub(l.Job.EventAt).Seconds())
	}
	for _, n := range r.Notes {
		p("\n%s\n", n)
	}
}
