// Package fhirtest holds fixtures for tests of the fhir packages: the official
// FHIR R4 examples, found through the R4_EXAMPLES environment variable, and
// the check that a resource built in Go is the one its JSON parses into.
package fhirtest

import (
	"os"
	"path/filepath"
	"sort"
	"testing"
)

// EnvExamples names the folder of the R4 examples; `make test` sets it to
// the folder `make testdata` fills.
const EnvExamples = "R4_EXAMPLES"

// ExamplesDir returns the folder of the R4 examples, failing t with a hint
// when it is not set up.
func ExamplesDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv(EnvExamples)
	if dir == "" {
		t.Fatalf("%s is not set: run make testdata, then set %s to .cache/r4-examples (make test does both)", EnvExamples, EnvExamples)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		t.Fatalf("%s=%s is not a folder of R4 examples: run make testdata", EnvExamples, dir)
	}
	return dir
}

// Example returns the named official R4 example, e.g.
// "ImagingStudy-example.json".
func Example(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(ExamplesDir(t), name))
	if err != nil {
		t.Fatalf("R4 example %s: %v (run make testdata)", name, err)
	}
	return b
}

// Examples returns the names of the R4 examples matching a glob pattern such
// as "Patient-*.json", sorted; it fails t when none match.
func Examples(t testing.TB, pattern string) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(ExamplesDir(t), pattern))
	if err != nil {
		t.Fatalf("R4 examples %s: %v", pattern, err)
	}
	if len(paths) == 0 {
		t.Fatalf("no R4 example matches %s in %s: run make testdata", pattern, os.Getenv(EnvExamples))
	}
	names := make([]string, len(paths))
	for i, p := range paths {
		names[i] = filepath.Base(p)
	}
	sort.Strings(names)
	return names
}
