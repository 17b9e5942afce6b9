package hl7v2

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// diff reports the difference between want and got, or "" when they are
// deeply equal. It stands in for cmp.Diff, which the house style prefers:
// github.com/google/go-cmp is not a direct requirement in go.mod yet, and
// this package must not edit go.mod. Swap it for cmp.Diff(want, got) once it
// is.
func diff(want, got any) string {
	if reflect.DeepEqual(want, got) {
		return ""
	}
	return fmt.Sprintf("-want +got:\n-%#v\n+%#v", want, got)
}

// wire joins segments with CR, the standard segment terminator.
func wire(segments ...string) []byte {
	return []byte(strings.Join(segments, "\r") + "\r")
}

func mustParse(t testing.TB, data []byte) *Message {
	t.Helper()
	m, err := Parse(data)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return m
}

func mustGet(t testing.TB, m *Message, path string) string {
	t.Helper()
	v, err := m.Get(path)
	if err != nil {
		t.Fatalf("Get(%q): %v", path, err)
	}
	return v
}
