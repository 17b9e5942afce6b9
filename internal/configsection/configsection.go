// Package configsection reads one top-level section of a Priorflow YAML
// config (PRIORFLOW_CONFIG). The file is shared: the identifier systems
// (internal/patientid) and the HL7 v2 tables (triggers/hl7v2) each read
// their own key and leave the others to their owners. It is internal
// because those readers report problems alike (file, line, column,
// section) and neither should import the other for it.
package configsection

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"go.yaml.in/yaml/v3"
)

// ReadFile reads the file at path; a file that does not exist reads as
// empty (every section absent: the defaults).
func ReadFile(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return data, err
}

// Section is one top-level key of a config and the problems found in it.
type Section struct {
	file, key string
	// fields are the key/value nodes of the section's mappings.
	fields   [][2]*yaml.Node
	problems []string
}

// Read finds key in data; file names the problems. A section that is no
// mapping is a problem saying what is wanted (want).
func Read(file string, data []byte, key, want string) (*Section, error) {
	s := &Section{file: file, key: key}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return s, nil
	}
	root := doc.Content[0]
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value != key {
			continue
		}
		sec := root.Content[i+1]
		if sec.Kind != yaml.MappingNode {
			s.Problem(sec, "want %s", want)
			continue
		}
		for j := 0; j+1 < len(sec.Content); j += 2 {
			s.fields = append(s.fields, [2]*yaml.Node{sec.Content[j], sec.Content[j+1]})
		}
	}
	return s, nil
}

// Fields calls fn with each key and value of the section, in order.
func (s *Section) Fields(fn func(k, v *yaml.Node)) {
	for _, f := range s.fields {
		fn(f[0], f[1])
	}
}

// Problem records a problem at n.
func (s *Section) Problem(n *yaml.Node, format string, args ...any) {
	s.problems = append(s.problems, fmt.Sprintf("%s:%d:%d: %s: %s", s.file, n.Line, n.Column, s.key, fmt.Sprintf(format, args...)))
}

// Table reads n as a mapping of names to single values: each name without
// surrounding spaces and listed once, each value one check accepts (it
// returns why not, or ""). label names an entry in problems; want says
// what n should be when it is no mapping.
func (s *Section) Table(n *yaml.Node, want string, label func(name string) string, check func(value string) string) map[string]string {
	if n.Kind != yaml.MappingNode {
		s.Problem(n, "%s", want)
		return nil
	}
	out := map[string]string{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch {
		case k.Value == "" || strings.TrimSpace(k.Value) != k.Value:
			s.Problem(k, "%s: a name without surrounding spaces is wanted", label(k.Value))
		case out[k.Value] != "":
			s.Problem(k, "%s is listed twice", label(k.Value))
		case v.Kind != yaml.ScalarNode:
			s.Problem(v, "%s: want a single value", label(k.Value))
		default:
			if why := check(v.Value); why != "" {
				s.Problem(v, "%s: %s", label(k.Value), why)
				continue
			}
			out[k.Value] = v.Value
		}
	}
	return out
}

// Err is every problem recorded, one per line, or nil.
func (s *Section) Err() error {
	if len(s.problems) == 0 {
		return nil
	}
	return errors.New(strings.Join(s.problems, "\n"))
}
