package dicomheader_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/priorflow/priorflow/archive/dicomheader"
)

func TestParsePersonName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want dicomheader.PersonName
	}{
		{"DOE^JANE", dicomheader.PersonName{Raw: "DOE^JANE", Family: "DOE", Given: "JANE"}},
		{"Adams^John Robert Quincy^^Rev.^B.A. M.Div.", dicomheader.PersonName{
			Raw: "Adams^John Robert Quincy^^Rev.^B.A. M.Div.", Family: "Adams", Given: "John Robert Quincy", Prefix: "Rev.", Suffix: "B.A. M.Div.",
		}},
		{"Yamada^Tarou=山田^太郎=やまだ^たろう", dicomheader.PersonName{
			Raw: "Yamada^Tarou=山田^太郎=やまだ^たろう", Family: "Yamada", Given: "Tarou", Ideographic: "山田^太郎", Phonetic: "やまだ^たろう",
		}},
		{"=山田^太郎", dicomheader.PersonName{Raw: "=山田^太郎", Ideographic: "山田^太郎"}},
		{"DOE ", dicomheader.PersonName{Raw: "DOE", Family: "DOE"}},
		{"  ", dicomheader.PersonName{}},
		{"", dicomheader.PersonName{}},
		{"A^B^C^D^E^F", dicomheader.PersonName{Raw: "A^B^C^D^E^F", Family: "A", Given: "B", Middle: "C", Prefix: "D", Suffix: "E^F"}},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, dicomheader.ParsePersonName(tt.in)); diff != "" {
			t.Errorf("ParsePersonName(%q) mismatch (-want +got):\n%s", tt.in, diff)
		}
	}
}

func TestPersonName_IsEmpty(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]bool{"": true, "^^^^": true, "==": true, "DOE": false, "=山田": false} {
		if got := dicomheader.ParsePersonName(in).IsEmpty(); got != want {
			t.Errorf("ParsePersonName(%q).IsEmpty() = %v, want %v", in, got, want)
		}
	}
}
