package rules

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/priorflow/priorflow/triggers"
)

// Explain prints, for `priorflow rules explain`, which rules match ev and
// why, and the job each match would plan. It only reads.
func Explain(w io.Writer, cfg *Config, ev *triggers.CareEvent, now time.Time) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "event %s: %s, priority %s, patient %s, trigger %s\n", ev.ID, ev.Kind, ev.Priority, PatientKey(ev.Patient), Trigger(ev))
	if ev.ScheduledStart != nil {
		fmt.Fprintf(&b, "scheduled start %s", ev.ScheduledStart.UTC().Format(time.RFC3339))
	} else {
		b.WriteString("no scheduled start")
	}
	fmt.Fprintf(&b, "; modality %s; body regions %s\n", orDash(ev.Modality), orDash(strings.Join(BodyRegions(ev), ",")))
	switch {
	case Cancels(ev.Kind):
		b.WriteString("this kind cancels the pending jobs of its trigger; no rule plans a job\n")
	case ev.Kind == triggers.AppointmentRescheduled:
		b.WriteString("this kind also moves the due time of pending jobs of its trigger\n")
	}
	b.WriteByte('\n')
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RULE\tMATCH\tDUE\tLANE\tCRITERIA\tWHY")
	for _, d := range cfg.Plan(ev, now) {
		if !d.Match {
			fmt.Fprintf(tw, "%s\tno\t-\t-\t-\t%s\n", d.Rule.Name, strings.Join(d.Reasons, "; "))
			continue
		}
		why := strings.Join(d.Reasons, "; ")
		if !d.Rule.Cooldown.IsZero() {
			why += "; cooldown " + d.Rule.Cooldown.String() + " per patient (checked when planning)"
		}
		fmt.Fprintf(tw, "%s\tyes\t%s\t%s\t%s\t%s\n", d.Rule.Name, d.Job.DueAt.UTC().Format(time.RFC3339), d.Job.Lane,
			d.Job.Criteria.Summary(), why)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("explain: %w", err)
	}
	if _, err := w.Write(b.Bytes()); err != nil {
		return fmt.Errorf("explain: %w", err)
	}
	return nil
}

// Summary prints the criteria on one line.
func (c Criteria) Summary() string {
	parts := []string{"max " + strconv.Itoa(c.MaxPriors)}
	if c.Lookback != "" {
		parts = append(parts, "since "+c.Since.Format("2006-01-02")+" ("+c.Lookback+")")
	}
	parts = append(parts, "modalities "+orAny(c.Modalities), "regions "+orAny(c.BodyRegions))
	if len(c.ExcludeModalities) > 0 {
		parts = append(parts, "not "+strings.Join(c.ExcludeModalities, ","))
	}
	parts = append(parts, "sources "+orAny(c.Sources))
	return strings.Join(parts, ", ")
}

func orAny(s []string) string {
	if len(s) == 0 {
		return "any"
	}
	return strings.Join(s, ",")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// ReadEvent decodes a CareEvent (JSON, schemaVersion 1) and validates it.
func ReadEvent(r io.Reader) (*triggers.CareEvent, error) {
	dec := json.NewDecoder(r)
	var ev triggers.CareEvent
	if err := dec.Decode(&ev); err != nil {
		return nil, fmt.Errorf("read care event: %w", err)
	}
	if err := ev.Validate(); err != nil {
		return nil, fmt.Errorf("read care event: %w", err)
	}
	return &ev, nil
}

// ReadEventFile reads a CareEvent JSON file (EVENT.json of `priorflow rules
// explain`).
func ReadEventFile(path string) (*triggers.CareEvent, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read care event: %w", err)
	}
	defer f.Close()
	return ReadEvent(f)
}
