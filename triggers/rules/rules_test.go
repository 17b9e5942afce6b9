package rules_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/priorflow/priorflow/triggers"
	"github.com/priorflow/priorflow/triggers/rules"
)

func loadExample(t *testing.T) *rules.Config {
	t.Helper()
	cfg, err := rules.LoadFile("testdata/priorflow.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestLoadFile_Example(t *testing.T) {
	t.Parallel()
	cfg := loadExample(t)
	if got, want := len(cfg.Rules), 3; got != want {
		t.Fatalf("rules=%d, want %d", got, want)
	}
	r := cfg.Rules[0]
	if got, want := r.LeadTime.String(), "12h"; got != want {
		t.Errorf("leadTime=%s, want %s", got, want)
	}
	if got, want := r.Lookback, (rules.Duration{Months: 60}); got != want {
		t.Errorf("lookback=%+v, want %+v", got, want)
	}
	if diff := cmp.Diff([]string{"SR", "KO", "PR"}, r.ExcludeModalities); diff != "" {
		t.Errorf("exclude (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"hospital-b", "imaging-center-c"}, cfg.Sources); diff != "" {
		t.Errorf("sources (-want +got):\n%s", diff)
	}
	if got, want := cfg.Rules[2].MaxPriors, rules.DefaultMaxPriors; got != want {
		t.Errorf("default maxPriors=%d, want %d", got, want)
	}
	if got, want := cfg.Rules[1].Modalities, (rules.ModalitySelector{Mode: "list", List: []string{"DX"}}); !cmp.Equal(got, want) {
		t.Errorf("modalities=%+v, want %+v", got, want)
	}
}

func TestParse_Errors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, yaml string
		want       []string // "line:col: fragment"
	}{
		{"unknown rule key", `
rules:
  - name: a
    on: [admission]
    leadtime: 12h
`, []string{"5:5: unknown key \"leadtime\""}},
		{"unknown event kind", `
rules:
  - name: a
    on: [admission, appointment-booked, apointment-booked]
`, []string{"4:41: on: unknown event kind \"apointment-booked\""}},
		{"cancellation cannot trigger", `
rules:
  - name: a
    on: [appointment-cancelled]
`, []string{"4:10: on: appointment-cancelled cannot trigger"}},
		{"bad durations", `
rules:
  - name: a
    on: [admission]
    leadTime: 12
    lookback: 5 years
    cooldown: 1x
`, []string{"5:15: leadTime: duration \"12\": 12 has no unit", "6:15: lookback: duration \"5 years\": unknown unit", "7:15: cooldown: duration \"1x\": unknown unit \"x\""}},
		{"bad modality lists", `
rules:
  - name: a
    on: [admission]
    when: {modality: [CT, ct]}
    modalities: [MR, MR]
    exclude: {modality: SR, series: [KO]}
`, []string{"5:27: when.modality: \"ct\" is not a DICOM modality", "6:22: modalities: MR listed twice", "7:29: unknown key \"series\" in exclude"}},
		{"modalities word", `
rules:
  - name: a
    on: [admission]
    modalities: similar
`, []string{"5:17: modalities \"similar\": want same, any or a list"}},
		{"duplicate names", `
rules:
  - name: a
    on: [admission]
  - name: a
    on: [transfer]
`, []string{"5:5: duplicate rule name \"a\" (first at line 3)"}},
		{"missing name and on", `
rules:
  - leadTime: 1h
`, []string{"3:5: rule has no name", "3:5: rule  has no on:"}},
		{"unknown source", `
sources:
  - name: hospital-b
rules:
  - name: a
    on: [admission]
    sources: [hospital-c]
`, []string{"5:1: rule a: source \"hospital-c\" is not declared"}},
		{"bad when key and priority", `
rules:
  - name: a
    on: [admission]
    when: {priority: [now], ward: [3]}
`, []string{"5:23: when.priority: \"now\" is not stat", "5:29: unknown key \"ward\" in when"}},
		{"maxPriors", `
rules:
  - name: a
    on: [admission]
    maxPriors: 0
`, []string{"5:16: maxPriors \"0\""}},
		{"yaml syntax", "rules:\n  - name: a\n   on: [x\n", []string{"1:0: did not find expected '-' indicator"}},
		{"rules not a list", "rules: {name: a}\n", []string{"1:8: rules: must be a list"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := rules.Parse("priorflow.yaml", []byte(tc.yaml))
			var perr *rules.Error
			if !errors.As(err, &perr) {
				t.Fatalf("err=%v, want a *rules.Error", err)
			}
			if got, want := len(perr.Problems), len(tc.want); got != want {
				t.Errorf("%d problems, want %d:\n%v", got, want, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), "priorflow.yaml:"+w) {
					t.Errorf("error does not contain %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestParse_IgnoresOtherTopLevelKeys(t *testing.T) {
	t.Parallel()
	cfg, err := rules.Parse("x.yaml", []byte("server: {addr: ':8080'}\nrules:\n  - name: a\n    on: [admission]\n    sources: [anything]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Sources != nil {
		t.Errorf("sources=%v, want nil when the file has no sources:", cfg.Sources)
	}
}

func TestParseDuration(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want rules.Duration
		err  bool
	}{
		{in: "5y", want: rules.Duration{Months: 60}},
		{in: "6mo", want: rules.Duration{Months: 6}},
		{in: "1d", want: rules.Duration{Days: 1}},
		{in: "7d", want: rules.Duration{Days: 7}},
		{in: "2w", want: rules.Duration{Days: 14}},
		{in: "12h", want: rules.Duration{Clock: 12 * time.Hour}},
		{in: "30m", want: rules.Duration{Clock: 30 * time.Minute}},
		{in: "1h30m", want: rules.Duration{Clock: 90 * time.Minute}},
		{in: "1y6mo", want: rules.Duration{Months: 18}},
		{in: "0"},
		{in: "", err: true},
		{in: "h", err: true},
		{in: "5", err: true},
		{in: "-1d", err: true},
		{in: "1.5h", err: true},
		{in: "3 d", err: true},
	} {
		got, err := rules.ParseDuration(tc.in)
		if (err != nil) != tc.err {
			t.Errorf("ParseDuration(%q) err=%v, want error %v", tc.in, err, tc.err)
			continue
		}
		if got != tc.want {
			t.Errorf("ParseDuration(%q)=%+v, want %+v", tc.in, got, tc.want)
		}
	}
	if got, want := (rules.Duration{Months: 60}).Before(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)), time.Date(2021, 3, 1, 0, 0, 0, 0, time.UTC); !got.Equal(want) {
		t.Errorf("5y before 2026-03-01=%v, want %v (calendar years)", got, want)
	}
}

var (
	now   = time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
	start = time.Date(2026, 3, 2, 9, 30, 0, 0, time.UTC)
)

type eventOpt func(*triggers.CareEvent)

func newEvent(opts ...eventOpt) *triggers.CareEvent {
	s := start
	ev := &triggers.CareEvent{SchemaVersion: 1, ID: "e1", Kind: triggers.AppointmentBooked, OccurredAt: now, ScheduledStart: &s,
		Priority: triggers.PriorityRoutine, Modality: "CT", Placer: "APPT-1", SourceSystem: "ris",
		Patient: triggers.Patient{Identifiers: []triggers.Identifier{{System: "urn:oid:1.2", Value: "V9"}, {System: "urn:oid:1.2.3", Value: "MRN1", Type: "MR"}}},
		Origin:  triggers.Origin{Reference: "Appointment/a1"}}
	for _, o := range opts {
		o(ev)
	}
	return ev
}

func TestPlan(t *testing.T) {
	t.Parallel()
	cfg := loadExample(t)
	type want struct {
		rules      []string // rules that match, in order
		due        time.Time
		lane       rules.Lane
		modalities []string
		regions    []string
		reason     string // a reason of the first decision
	}
	for _, tc := range []struct {
		name string
		ev   *triggers.CareEvent
		want want
	}{
		{"booked CT: due start minus lead time", newEvent(), want{rules: []string{"priors-before-visits"},
			due: start.Add(-12 * time.Hour), lane: rules.LaneRoutine, modalities: []string{"CT", "PT"}, reason: "due start 2026-03-02T09:30:00Z − leadTime 12h"}},
		{"kind not in on", newEvent(func(e *triggers.CareEvent) { e.Kind = triggers.Registration }), want{
			reason: "kind registration is not in on: [appointment-booked appointment-rescheduled ed-arrival transfer admission order-placed]"}},
		{"when modality fails", newEvent(func(e *triggers.CareEvent) { e.Modality = "US" }), want{reason: "modality US is not in when.modality [CT MR]"}},
		{"no modality fails a modality predicate", newEvent(func(e *triggers.CareEvent) { e.Modality = "" }), want{reason: "event has no modality"}},
		{"stat order is immediate and in the stat lane", newEvent(func(e *triggers.CareEvent) {
			e.Kind, e.Priority, e.Modality = triggers.OrderPlaced, triggers.PriorityStat, "MR"
		}), want{rules: []string{"priors-before-visits"}, due: now, lane: rules.LaneStat, modalities: []string{"MR"}, reason: "immediate (priority stat): due now"}},
		{"ED arrival is immediate even when routine", newEvent(func(e *triggers.CareEvent) { e.Kind = triggers.EDArrival }), want{
			rules: []string{"priors-before-visits"}, due: now, lane: rules.LaneStat, modalities: []string{"CT", "PT"}, reason: "immediate (ED arrival): due now"}},
		{"stat ED arrival matches two rules", newEvent(func(e *triggers.CareEvent) {
			e.Kind, e.Priority = triggers.EDArrival, triggers.PriorityStat
		}), want{rules: []string{"priors-before-visits", "stat-anything"}, due: now, lane: rules.LaneStat, modalities: []string{"CT", "PT"}}},
		{"lead time already passed", newEvent(func(e *triggers.CareEvent) { s := now.Add(time.Hour); e.ScheduledStart = &s }), want{
			rules: []string{"priors-before-visits"}, due: now, lane: rules.LaneRoutine, modalities: []string{"CT", "PT"}, reason: "has passed: due now"}},
		{"no scheduled start", newEvent(func(e *triggers.CareEvent) { e.ScheduledStart = nil }), want{
			rules: []string{"priors-before-visits"}, due: now, lane: rules.LaneRoutine, modalities: []string{"CT", "PT"}, reason: "no scheduled start: due now"}},
		{"urgent goes in the stat lane but waits for its lead time", newEvent(func(e *triggers.CareEvent) { e.Priority = triggers.PriorityUrgent }), want{
			rules: []string{"priors-before-visits"}, due: start.Add(-12 * time.Hour), lane: rules.LaneStat, modalities: []string{"CT", "PT"}}},
		{"CR order: CR≈DX group, list selector", newEvent(func(e *triggers.CareEvent) { e.Kind, e.Modality = triggers.OrderPlaced, "CR" }), want{
			rules: []string{"chest-xray-any-site"}, due: start, lane: rules.LaneRoutine, modalities: []string{"CR", "DX"}}},
		{"body region from procedure and body site", newEvent(func(e *triggers.CareEvent) {
			e.Procedures = []triggers.Code{{Code: "CTAP", Display: "CT ABDOMEN PELVIS W CONTRAST"}}
			e.BodySites = []triggers.Code{{System: "http://snomed.info/sct", Code: "12738006"}}
		}), want{rules: []string{"priors-before-visits"}, due: start.Add(-12 * time.Hour), lane: rules.LaneRoutine,
			modalities: []string{"CT", "PT"}, regions: []string{"abdomen", "head", "pelvis"}}},
		{"unknown body region means any", newEvent(func(e *triggers.CareEvent) { e.Procedures = []triggers.Code{{Code: "X1", Display: "Protocol 7"}} }), want{
			rules: []string{"priors-before-visits"}, due: start.Add(-12 * time.Hour), lane: rules.LaneRoutine, modalities: []string{"CT", "PT"}, reason: "bodyRegion same: region unknown, so any"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ds := cfg.Plan(tc.ev, now)
			if got, want := len(ds), len(cfg.Rules); got != want {
				t.Fatalf("%d decisions, want one per rule (%d)", got, want)
			}
			var matched []string
			var first *rules.Decision
			for i := range ds {
				if ds[i].Match {
					matched = append(matched, ds[i].Rule.Name)
					if first == nil {
						first = &ds[i]
					}
				}
			}
			if diff := cmp.Diff(tc.want.rules, matched); diff != "" {
				t.Fatalf("matching rules (-want +got):\n%s\n%v", diff, ds[0].Reasons)
			}
			if tc.want.reason != "" && !strings.Contains(strings.Join(ds[0].Reasons, "\n"), tc.want.reason) {
				t.Errorf("reasons %q lack %q", ds[0].Reasons, tc.want.reason)
			}
			if first == nil {
				return
			}
			j := first.Job
			if !j.DueAt.Equal(tc.want.due) {
				t.Errorf("due=%v, want %v", j.DueAt, tc.want.due)
			}
			if j.Lane != tc.want.lane {
				t.Errorf("lane=%s, want %s", j.Lane, tc.want.lane)
			}
			if diff := cmp.Diff(tc.want.modalities, j.Criteria.Modalities); diff != "" {
				t.Errorf("modalities (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.want.regions, j.Criteria.BodyRegions); diff != "" {
				t.Errorf("regions (-want +got):\n%s", diff)
			}
			if got, want := j.Key, rules.JobKey(first.Rule.Name, "urn:oid:1.2.3|MRN1", "placer:APPT-1"); got != want {
				t.Errorf("key=%q, want %q", got, want)
			}
		})
	}
}

func TestPlan_CriteriaOfExample(t *testing.T) {
	t.Parallel()
	cfg := loadExample(t)
	ds := cfg.Plan(newEvent(), now)
	since := time.Date(2021, 3, 2, 9, 30, 0, 0, time.UTC)
	want := rules.Criteria{Lookback: "5y", Since: &since, MaxPriors: 2, Modalities: []string{"CT", "PT"},
		ExcludeModalities: []string{"SR", "KO", "PR"}, Sources: []string{"hospital-b"}}
	if diff := cmp.Diff(want, ds[0].Job.Criteria); diff != "" {
		t.Errorf("criteria (-want +got):\n%s", diff)
	}
}

func TestPlan_ExclusionsWinOverModalityList(t *testing.T) {
	t.Parallel()
	cfg, err := rules.Parse("x.yaml", []byte("rules:\n  - name: a\n    on: [admission]\n    modalities: [CT, SR]\n    exclude: {modality: [SR, PT]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	ds := cfg.Plan(newEvent(func(e *triggers.CareEvent) { e.Kind = triggers.Admission }), now)
	if diff := cmp.Diff([]string{"CT"}, ds[0].Job.Criteria.Modalities); diff != "" {
		t.Errorf("modalities (-want +got):\n%s", diff)
	}
}

func TestRule_CoolingDown(t *testing.T) {
	t.Parallel()
	r := loadExample(t).Rules[0] // cooldown 1h
	for _, tc := range []struct {
		last time.Time
		want bool
	}{
		{time.Time{}, false},
		{now.Add(-30 * time.Minute), true},
		{now.Add(-time.Hour), false},
		{now.Add(-2 * time.Hour), false},
	} {
		if got := r.CoolingDown(tc.last, now); got != tc.want {
			t.Errorf("CoolingDown(last %v)=%v, want %v", tc.last, got, tc.want)
		}
	}
	if (&rules.Rule{}).CoolingDown(now, now) {
		t.Error("a rule without cooldown is cooling down")
	}
}

func TestExplain(t *testing.T) {
	t.Parallel()
	cfg := loadExample(t)
	ev, err := rules.ReadEventFile("testdata/event.json")
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := rules.Explain(&b, cfg, ev, now); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"event e-0001: appointment-booked, priority routine, patient urn:oid:1.2.3.4|MRN123, trigger placer:APPT-77",
		"body regions chest",
		"priors-before-visits  yes    2026-03-01T21:30:00Z  routine",
		"max 2, since 2021-03-02 (5y), modalities CT,PT, regions chest, not SR,KO,PR, sources hospital-b",
		"cooldown 1h per patient",
		"chest-xray-any-site   no",
		"kind appointment-booked is not in on: [order-placed ed-arrival]",
		"stat-anything         no",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("explain output lacks %q:\n%s", want, out)
		}
	}
}

func TestReadEvent_Invalid(t *testing.T) {
	t.Parallel()
	if _, err := rules.ReadEvent(strings.NewReader(`{"schemaVersion": 1, "id": "x"}`)); err == nil {
		t.Error("an invalid event was read")
	}
	if _, err := rules.ReadEvent(strings.NewReader(`{`)); err == nil {
		t.Error("malformed JSON was read")
	}
}
