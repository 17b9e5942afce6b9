// Package rules decides which prior imaging to prefetch for a care event.
// Rules are read from the `rules:` key of the Priorflow YAML config (the
// file named by PRIORFLOW_CONFIG, which also holds the remote `sources:`);
// Plan evaluates them against a triggers.CareEvent and returns, per rule, a
// match with the job to plan or the reasons it did not match. Evaluation is
// pure: persistence, cooldowns and publishing belong to triggers/planner.
package rules

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/priorflow/priorflow/triggers"
)

// Config is the rule set.
type Config struct {
	Rules []*Rule
	// Sources are the names under the file's `sources:` key, nil when the
	// file has none (then a rule's sources are not checked).
	Sources []string
}

// Rule is one prefetch rule.
type Rule struct {
	Name string
	// On lists the event kinds that trigger the rule.
	On []triggers.Kind
	// When holds optional predicates on the event; all set ones must hold.
	When Predicates
	// LeadTime is how long before ScheduledStart the job is due.
	LeadTime Duration
	// Sources restricts the remote sources searched; empty means every one.
	Sources []string
	// Lookback bounds how old a prior may be; zero means no bound.
	Lookback Duration
	// MaxPriors is how many of the most recent relevant studies to fetch.
	MaxPriors int
	// Modalities selects the priors' modalities.
	Modalities ModalitySelector
	// BodyRegion is "same" (the event's region, when known) or "any".
	BodyRegion string
	// ExcludeModalities are never fetched (SR, KO, PR: no pixels to compare).
	ExcludeModalities []string
	// Cooldown suppresses a new job for the same rule and patient within
	// this span of the last one (enforced by the planner).
	Cooldown Duration
	// Line is where the rule starts in the file.
	Line int
}

// Predicates are the optional `when:` conditions. Every list that is set
// must contain the event's value (any of them for multi-valued fields).
type Predicates struct {
	Modality     []string // event modality (DICOM code)
	Priority     []string // stat | asap | urgent | routine
	SourceSystem []string
	Location     []string
	Procedure    []string // procedure code, or system|code
	BodyRegion   []string // regions derived from body sites and procedures (see regions.go)
}

// ModalitySelector is `modalities: same | any | [list]`.
type ModalitySelector struct {
	Mode string   // "same", "any" or "list"
	List []string // for "list"
}

// Defaults applied to keys a rule leaves out.
const (
	DefaultMaxPriors  = 3
	DefaultModalities = "same"
	DefaultBodyRegion = "any"
)

// Problem is one error in the file.
type Problem struct {
	Line, Column int
	Msg          string
}

// Error lists every problem found in a rules file, each with its line.
type Error struct {
	File     string
	Problems []Problem
}

func (e *Error) Error() string {
	var b strings.Builder
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "%s:%d:%d: %s", e.File, p.Line, p.Column, p.Msg)
	}
	return b.String()
}

// LoadFile reads and validates the rules of the YAML file at path.
func LoadFile(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load rules: %w", err)
	}
	return Parse(path, data)
}

// Parse reads and validates rules from YAML; name labels errors. Keys other
// than `rules:` and `sources:` at the top level belong to other parts of
// Priorflow and are ignored. All problems are reported at once.
func Parse(name string, data []byte) (*Config, error) {
	p := &parser{err: &Error{File: name}}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		line := 0
		// yaml reports syntax errors as "yaml: line N: reason".
		msg := err.Error()
		if m := yamlLine.FindStringSubmatch(msg); m != nil {
			line, _ = strconv.Atoi(m[1])
			msg = m[2]
		}
		p.err.Problems = append(p.err.Problems, Problem{Line: line, Msg: msg})
		return nil, p.err
	}
	cfg := &Config{}
	if len(doc.Content) == 0 {
		p.add(&doc, "the file is empty: expected a mapping with a rules: key")
		return nil, p.err
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		p.add(root, "the top level must be a mapping with a rules: key")
		return nil, p.err
	}
	var rulesNode *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		switch k, v := root.Content[i], root.Content[i+1]; k.Value {
		case "rules":
			rulesNode = v
		case "sources":
			cfg.Sources = p.sourceNames(v)
		}
	}
	if rulesNode != nil {
		cfg.Rules = p.rules(rulesNode)
	}
	if cfg.Sources != nil {
		for _, r := range cfg.Rules {
			for _, s := range r.Sources {
				if !slices.Contains(cfg.Sources, s) {
					p.err.Problems = append(p.err.Problems, Problem{Line: r.Line, Column: 1,
						Msg: fmt.Sprintf("rule %s: source %q is not declared under sources: (have %s)", r.Name, s, strings.Join(cfg.Sources, ", "))})
				}
			}
		}
	}
	if len(p.err.Problems) > 0 {
		slices.SortStableFunc(p.err.Problems, func(a, b Problem) int { return a.Line - b.Line })
		return nil, p.err
	}
	return cfg, nil
}

var (
	yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)
	ruleName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
)

type parser struct{ err *Error }

func (p *parser) add(n *yaml.Node, format string, args ...any) {
	p.err.Problems = append(p.err.Problems, Problem{Line: n.Line, Column: n.Column, Msg: fmt.Sprintf(format, args...)})
}

// sourceNames accepts `sources:` as a list of mappings with a name key or
// as a mapping keyed by name; the source schema itself is validated by the
// sources loader, not here.
func (p *parser) sourceNames(n *yaml.Node) []string {
	names := []string{}
	switch n.Kind {
	case yaml.SequenceNode:
		for _, item := range n.Content {
			if item.Kind != yaml.MappingNode {
				continue
			}
			for i := 0; i+1 < len(item.Content); i += 2 {
				if item.Content[i].Value == "name" {
					names = append(names, item.Content[i+1].Value)
				}
			}
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			names = append(names, n.Content[i].Value)
		}
	}
	return names
}

func (p *parser) rules(n *yaml.Node) []*Rule {
	if n.Kind != yaml.SequenceNode {
		p.add(n, "rules: must be a list of rules")
		return nil
	}
	var out []*Rule
	seen := map[string]int{}
	for _, item := range n.Content {
		r := p.rule(item)
		if r == nil {
			continue
		}
		if first, dup := seen[r.Name]; dup && r.Name != "" {
			p.add(item, "duplicate rule name %q (first at line %d)", r.Name, first)
			continue
		}
		seen[r.Name] = r.Line
		out = append(out, r)
	}
	return out
}

func (p *parser) rule(n *yaml.Node) *Rule {
	if n.Kind != yaml.MappingNode {
		p.add(n, "a rule must be a mapping")
		return nil
	}
	r := &Rule{Line: n.Line, MaxPriors: DefaultMaxPriors, Modalities: ModalitySelector{Mode: DefaultModalities}, BodyRegion: DefaultBodyRegion}
	keys := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if keys[k.Value] {
			p.add(k, "key %s: given twice", k.Value)
			continue
		}
		keys[k.Value] = true
		switch k.Value {
		case "name":
			if s, ok := p.scalar(v, "name"); ok {
				if !ruleName.MatchString(s) {
					p.add(v, "name %q: use letters, digits, '.', '_' or '-' (at most 64)", s)
				}
				r.Name = s
			}
		case "on":
			for _, s := range p.list(v, "on", false) {
				k := triggers.Kind(s.Value)
				switch {
				case !slices.Contains(triggers.Kinds, k):
					p.add(s, "on: unknown event kind %q (known: %s)", s.Value, kindList())
				case cancels(k) || k == triggers.PatientMerged:
					p.add(s, "on: %s cannot trigger a prefetch (cancellations cancel jobs; merges are handled by the planner)", k)
				case slices.Contains(r.On, k):
					p.add(s, "on: %s listed twice", k)
				default:
					r.On = append(r.On, k)
				}
			}
		case "when":
			r.When = p.when(v)
		case "leadTime":
			r.LeadTime = p.duration(v, "leadTime")
		case "lookback":
			r.Lookback = p.duration(v, "lookback")
		case "cooldown":
			r.Cooldown = p.duration(v, "cooldown")
		case "sources":
			for _, s := range p.list(v, "sources", false) {
				r.Sources = append(r.Sources, s.Value)
			}
		case "maxPriors":
			if s, ok := p.scalar(v, "maxPriors"); ok {
				n, err := strconv.Atoi(s)
				if err != nil || n < 1 || n > 100 {
					p.add(v, "maxPriors %q: want a whole number from 1 to 100", s)
				} else {
					r.MaxPriors = n
				}
			}
		case "modalities":
			r.Modalities = p.modalitySelector(v)
		case "bodyRegion":
			if s, ok := p.scalar(v, "bodyRegion"); ok {
				if s != "same" && s != "any" {
					p.add(v, "bodyRegion %q: want same or any", s)
				} else {
					r.BodyRegion = s
				}
			}
		case "exclude":
			r.ExcludeModalities = p.exclude(v)
		default:
			p.add(k, "unknown key %q in rule (known: name, on, when, leadTime, sources, lookback, maxPriors, modalities, bodyRegion, exclude, cooldown)", k.Value)
		}
	}
	if r.Name == "" {
		p.add(n, "rule has no name")
	}
	if len(r.On) == 0 && !keys["on"] {
		p.add(n, "rule %s has no on: list of event kinds", r.Name)
	}
	return r
}

func (p *parser) scalar(n *yaml.Node, key string) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.Value == "" {
		p.add(n, "%s: want a single value", key)
		return "", false
	}
	return n.Value, true
}

// list accepts a flow or block sequence of scalars (or one scalar).
func (p *parser) list(n *yaml.Node, key string, allowEmpty bool) []*yaml.Node {
	var items []*yaml.Node
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Value != "" {
			items = []*yaml.Node{n}
		}
	case yaml.SequenceNode:
		for _, it := range n.Content {
			if it.Kind != yaml.ScalarNode || it.Value == "" {
				p.add(it, "%s: items must be plain values", key)
				continue
			}
			items = append(items, it)
		}
	default:
		p.add(n, "%s: want a list", key)
		return nil
	}
	if len(items) == 0 && !allowEmpty {
		p.add(n, "%s: the list is empty", key)
	}
	return items
}

func (p *parser) duration(n *yaml.Node, key string) Duration {
	s, ok := p.scalar(n, key)
	if !ok {
		return Duration{}
	}
	d, err := ParseDuration(s)
	if err != nil {
		p.add(n, "%s: %v", key, err)
	}
	return d
}

func (p *parser) modalities(n *yaml.Node, key string) []string {
	var out []string
	for _, it := range p.list(n, key, false) {
		m := it.Value
		switch {
		case !IsModality(m):
			p.add(it, "%s: %q is not a DICOM modality (PS3.3 C.7.3.1.1.1), e.g. CT, MR, CR, DX, US, MG, PT, NM", key, m)
		case slices.Contains(out, m):
			p.add(it, "%s: %s listed twice", key, m)
		default:
			out = append(out, m)
		}
	}
	return out
}

func (p *parser) modalitySelector(n *yaml.Node) ModalitySelector {
	if n.Kind == yaml.ScalarNode && (n.Value == "same" || n.Value == "any") {
		return ModalitySelector{Mode: n.Value}
	}
	if n.Kind == yaml.ScalarNode {
		p.add(n, "modalities %q: want same, any or a list of DICOM modalities", n.Value)
		return ModalitySelector{Mode: DefaultModalities}
	}
	return ModalitySelector{Mode: "list", List: p.modalities(n, "modalities")}
}

func (p *parser) exclude(n *yaml.Node) []string {
	if n.Kind != yaml.MappingNode {
		p.add(n, "exclude: want a mapping such as {modality: [SR, KO, PR]}")
		return nil
	}
	var out []string
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Value != "modality" {
			p.add(k, "unknown key %q in exclude (known: modality)", k.Value)
			continue
		}
		out = p.modalities(v, "exclude.modality")
	}
	return out
}

func (p *parser) when(n *yaml.Node) Predicates {
	var w Predicates
	if n.Kind != yaml.MappingNode {
		p.add(n, "when: want a mapping such as {modality: [CT, MR]}")
		return w
	}
	values := func(v *yaml.Node, key string) []string {
		var out []string
		for _, it := range p.list(v, "when."+key, false) {
			out = append(out, it.Value)
		}
		return out
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch k.Value {
		case "modality":
			w.Modality = p.modalities(v, "when.modality")
		case "priority":
			for _, it := range p.list(v, "when.priority", false) {
				switch triggers.Priority(it.Value) {
				case triggers.PriorityStat, triggers.PriorityASAP, triggers.PriorityUrgent, triggers.PriorityRoutine:
					w.Priority = append(w.Priority, it.Value)
				default:
					p.add(it, "when.priority: %q is not stat, asap, urgent or routine", it.Value)
				}
			}
		case "sourceSystem":
			w.SourceSystem = values(v, k.Value)
		case "location":
			w.Location = values(v, k.Value)
		case "procedure":
			w.Procedure = values(v, k.Value)
		case "bodyRegion":
			for _, it := range p.list(v, "when.bodyRegion", false) {
				if !slices.Contains(Regions, it.Value) {
					p.add(it, "when.bodyRegion: %q is not a region (known: %s)", it.Value, strings.Join(Regions, ", "))
					continue
				}
				w.BodyRegion = append(w.BodyRegion, it.Value)
			}
		default:
			p.add(k, "unknown key %q in when (known: modality, priority, sourceSystem, location, procedure, bodyRegion)", k.Value)
		}
	}
	return w
}

func kindList() string {
	var s []string
	for _, k := range triggers.Kinds {
		if !cancels(k) && k != triggers.PatientMerged {
			s = append(s, string(k))
		}
	}
	return strings.Join(s, ", ")
}

// cancels reports the kinds that cancel the jobs of their trigger.
func cancels(k triggers.Kind) bool {
	return k == triggers.AppointmentCancelled || k == triggers.OrderCancelled || k == triggers.VisitCancelled
}

// Cancels reports whether events of kind k cancel the pending jobs of the
// appointment, visit or order they name.
func Cancels(k triggers.Kind) bool { return cancels(k) }
