package rules

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/priorflow/priorflow/triggers"
)

// Lane orders jobs for the prefetch worker: stat before routine.
type Lane string

const (
	LaneStat    Lane = "stat"
	LaneRoutine Lane = "routine"
)

// LaneOf puts immediate events (stat, asap, ED arrivals) and urgent ones in
// the stat lane, everything else in the routine lane.
func LaneOf(ev *triggers.CareEvent) Lane {
	if ev.Immediate() || ev.Priority == triggers.PriorityUrgent {
		return LaneStat
	}
	return LaneRoutine
}

// Decision is the outcome of one rule for one event.
type Decision struct {
	Rule  *Rule
	Match bool
	// Reasons say why the rule matched or, for a non-match, which
	// condition failed; for `priorflow rules explain`.
	Reasons []string
	// Job is the job to plan when Match.
	Job *JobSpec
}

// JobSpec is a prefetch job as the rules define it, before the planner
// persists it.
type JobSpec struct {
	Rule string
	// Key is the idempotency key: rule, patient and trigger. A redelivered
	// or resent event, and a reschedule of the same appointment, yield the
	// same key.
	Key        string
	PatientKey string
	// Trigger names what the job is for: the placer number, else the
	// origin reference, else the event id.
	Trigger string
	DueAt   time.Time
	// NeedBy is when the priors are needed (ScheduledStart), nil for now.
	NeedBy   *time.Time
	Lane     Lane
	Priority triggers.Priority
	LeadTime Duration
	Cooldown Duration
	Criteria Criteria
}

// Criteria are what the network search applies when the job runs.
type Criteria struct {
	// Lookback as written in the rule ("5y"), and the oldest study date it
	// gives counted back from NeedBy (or the planning time).
	Lookback  string     `json:"lookback,omitempty"`
	Since     *time.Time `json:"since,omitempty"`
	MaxPriors int        `json:"maxPriors"`
	// Modalities of acceptable priors, groups expanded; empty means any.
	Modalities []string `json:"modalities,omitempty"`
	// BodyRegions of acceptable priors; empty means any.
	BodyRegions       []string `json:"bodyRegions,omitempty"`
	ExcludeModalities []string `json:"excludeModalities,omitempty"`
	// Sources to search; empty means every configured source.
	Sources []string `json:"sources,omitempty"`
}

// PatientKey is the patient part of a job key: the first identifier typed
// MR (medical record number), else the first identifier, as
// "<system or authority>|<value>".
func PatientKey(p triggers.Patient) string {
	if len(p.Identifiers) == 0 {
		return ""
	}
	id := p.Identifiers[0]
	for _, x := range p.Identifiers {
		if x.Type == "MR" {
			id = x
			break
		}
	}
	ns := id.System
	if ns == "" {
		ns = id.Authority
	}
	return ns + "|" + id.Value
}

// Trigger returns what an event's jobs belong to: the placer number of the
// appointment, visit or order, else the origin reference, else the event id.
func Trigger(ev *triggers.CareEvent) string {
	switch {
	case ev.Placer != "":
		return "placer:" + ev.Placer
	case ev.Origin.Reference != "":
		return "origin:" + ev.Origin.Reference
	default:
		return "event:" + ev.ID
	}
}

// JobKey is the idempotency key of a rule's job for a patient and trigger.
func JobKey(rule, patientKey, trigger string) string {
	return rule + "\x1f" + patientKey + "\x1f" + trigger
}

// Plan evaluates every rule against ev, in file order. It has no side
// effects; now anchors immediate jobs and look-backs. Cooldowns need the
// job history and are left to the planner (see Rule.CoolingDown).
func (c *Config) Plan(ev *triggers.CareEvent, now time.Time) []Decision {
	out := make([]Decision, 0, len(c.Rules))
	regions := BodyRegions(ev)
	for _, r := range c.Rules {
		out = append(out, r.evaluate(ev, regions, now))
	}
	return out
}

// CoolingDown reports whether a job planned at last (zero: never) still
// holds off a new one for the same patient at now.
func (r *Rule) CoolingDown(last, now time.Time) bool {
	return !r.Cooldown.IsZero() && !last.IsZero() && now.Before(last.AddDate(0, r.Cooldown.Months, r.Cooldown.Days).Add(r.Cooldown.Clock))
}

func (r *Rule) evaluate(ev *triggers.CareEvent, regions []string, now time.Time) Decision {
	d := Decision{Rule: r}
	fail := func(format string, args ...any) Decision {
		d.Reasons = append(d.Reasons, fmt.Sprintf(format, args...))
		return d
	}
	if !slices.Contains(r.On, ev.Kind) {
		return fail("kind %s is not in on: [%s]", ev.Kind, joinKinds(r.On))
	}
	d.Reasons = append(d.Reasons, fmt.Sprintf("kind %s", ev.Kind))
	w := r.When
	if len(w.Modality) > 0 {
		if ev.Modality == "" {
			return fail("event has no modality; when.modality wants [%s]", strings.Join(w.Modality, " "))
		}
		if !slices.Contains(w.Modality, strings.ToUpper(ev.Modality)) {
			return fail("modality %s is not in when.modality [%s]", ev.Modality, strings.Join(w.Modality, " "))
		}
		d.Reasons = append(d.Reasons, "modality "+ev.Modality)
	}
	if len(w.Priority) > 0 {
		if !slices.Contains(w.Priority, string(ev.Priority)) {
			return fail("priority %s is not in when.priority [%s]", ev.Priority, strings.Join(w.Priority, " "))
		}
		d.Reasons = append(d.Reasons, "priority "+string(ev.Priority))
	}
	if len(w.SourceSystem) > 0 {
		if !slices.Contains(w.SourceSystem, ev.SourceSystem) {
			return fail("source system %q is not in when.sourceSystem [%s]", ev.SourceSystem, strings.Join(w.SourceSystem, " "))
		}
		d.Reasons = append(d.Reasons, "source system "+ev.SourceSystem)
	}
	if len(w.Location) > 0 {
		if !slices.Contains(w.Location, ev.Location) {
			return fail("location %q is not in when.location [%s]", ev.Location, strings.Join(w.Location, " "))
		}
		d.Reasons = append(d.Reasons, "location "+ev.Location)
	}
	if len(w.Procedure) > 0 {
		hit := ""
		for _, p := range ev.Procedures {
			if slices.Contains(w.Procedure, p.Code) || slices.Contains(w.Procedure, p.System+"|"+p.Code) {
				hit = p.Code
				break
			}
		}
		if hit == "" {
			return fail("no procedure code in when.procedure [%s]", strings.Join(w.Procedure, " "))
		}
		d.Reasons = append(d.Reasons, "procedure "+hit)
	}
	if len(w.BodyRegion) > 0 {
		hit := ""
		for _, g := range regions {
			if slices.Contains(w.BodyRegion, g) {
				hit = g
				break
			}
		}
		if hit == "" {
			return fail("body region [%s] is not in when.bodyRegion [%s]", strings.Join(regions, " "), strings.Join(w.BodyRegion, " "))
		}
		d.Reasons = append(d.Reasons, "body region "+hit)
	}

	d.Match = true
	job := &JobSpec{
		Rule:       r.Name,
		PatientKey: PatientKey(ev.Patient),
		Trigger:    Trigger(ev),
		Lane:       LaneOf(ev),
		Priority:   ev.Priority,
		LeadTime:   r.LeadTime,
		Cooldown:   r.Cooldown,
		NeedBy:     ev.ScheduledStart,
	}
	job.Key = JobKey(r.Name, job.PatientKey, job.Trigger)
	var why string
	job.DueAt, why = DueAt(ev.ScheduledStart, r.LeadTime, ev, now)
	d.Reasons = append(d.Reasons, why)

	anchor := now
	if ev.ScheduledStart != nil {
		anchor = *ev.ScheduledStart
	}
	cr := Criteria{MaxPriors: r.MaxPriors, Sources: r.Sources, ExcludeModalities: r.ExcludeModalities}
	if !r.Lookback.IsZero() {
		since := r.Lookback.Before(anchor).UTC()
		cr.Lookback, cr.Since = r.Lookback.String(), &since
	}
	switch r.Modalities.Mode {
	case "list":
		cr.Modalities = ExpandModalities(r.Modalities.List...)
	case "same":
		if ev.Modality == "" {
			d.Reasons = append(d.Reasons, "modalities same: event has no modality, so any")
		} else {
			cr.Modalities = ExpandModalities(strings.ToUpper(ev.Modality))
		}
	}
	cr.Modalities = slices.DeleteFunc(cr.Modalities, func(m string) bool { return slices.Contains(r.ExcludeModalities, m) })
	if r.BodyRegion == "same" {
		if len(regions) == 0 {
			d.Reasons = append(d.Reasons, "bodyRegion same: region unknown, so any")
		} else {
			cr.BodyRegions = regions
		}
	}
	job.Criteria = cr
	d.Job = job
	return d
}

// DueAt is when a job is due: now for immediate events (stat, asap, ED) and
// events without a scheduled start, else ScheduledStart − lead, but never
// before now. why explains the choice.
func DueAt(start *time.Time, lead Duration, ev *triggers.CareEvent, now time.Time) (due time.Time, why string) {
	switch {
	case ev.Immediate():
		return now, fmt.Sprintf("immediate (%s): due now", immediateWhy(ev))
	case start == nil:
		return now, "no scheduled start: due now"
	}
	due = lead.Before(*start)
	if due.Before(now) {
		return now, fmt.Sprintf("start %s − leadTime %s has passed: due now", start.UTC().Format(time.RFC3339), lead)
	}
	return due, fmt.Sprintf("due start %s − leadTime %s", start.UTC().Format(time.RFC3339), lead)
}

func immediateWhy(ev *triggers.CareEvent) string {
	if ev.Kind == triggers.EDArrival {
		return "ED arrival"
	}
	return "priority " + string(ev.Priority)
}

func joinKinds(ks []triggers.Kind) string {
	s := make([]string, len(ks))
	for i, k := range ks {
		s[i] = string(k)
	}
	return strings.Join(s, " ")
}
