package fhir

import (
	"strings"
	"testing"
	"unicode"

	"golang.org/x/text/runes"
	"golang.org/x/text/transform"
	"golang.org/x/text/unicode/norm"
)

// freshFolding is NormalizeString as it was: a new transformer chain for
// every string, ASCII or not.
func freshFolding(s string) string {
	t := transform.Chain(norm.NFD, runes.Remove(runes.In(unicode.Mn)), norm.NFC)
	out, _, err := transform.String(t, s)
	if err != nil {
		out = s
	}
	return strings.ToLower(out)
}

// NormalizeString's ASCII path and its pooled chains fold as a new chain
// does, whatever the strings folded before.
func FuzzNormalizeString_AsFreshFolding(f *testing.F) {
	for _, s := range []string{"Chalmers", "du Marché", "50%_off", "A\x00Z", "", "ÅNGSTRÖM", "\xff", "e\u0301\u0301"} {
		f.Add(s, "Bénédicte")
	}
	f.Fuzz(func(t *testing.T, s, before string) {
		NormalizeString(before) // leaves a used chain in the pool
		if got, want := NormalizeString(s), freshFolding(s); got != want {
			t.Fatalf("NormalizeString(%q) = %q, a new chain folds it to %q", s, got, want)
		}
	})
}

func BenchmarkNormalizeString(b *testing.B) {
	for _, s := range []string{"Priorflow viewer", "Bénédicte"} {
		for _, f := range []struct {
			name string
			fold func(string) string
		}{{"pooled", NormalizeString}, {"fresh", freshFolding}} {
			b.Run(f.name+"/"+s, func(b *testing.B) {
				b.ReportAllocs()
				for range b.N {
					f.fold(s)
				}
			})
		}
	}
}
