package dicomjson

import (
	"bytes"
	"encoding/json"
	"testing"
)

// The encoder writes strings that need no escaping itself; what it writes
// must be what encoding/json writes for every string.
func TestStr_SameAsEncodingJSON(t *testing.T) {
	t.Parallel()
	var cases []string
	for c := range 256 {
		cases = append(cases, string([]byte{byte(c)}), "1.2."+string([]byte{byte(c)})+"3")
	}
	cases = append(cases, "", "DOE^JANE", "1.2.840.10008.1.2.1", "Müller^Jürgen", "a\u2028b", "\xff\xfe", `back\slash`)
	for _, s := range cases {
		checkStr(t, s)
	}
}

func FuzzStr_SameAsEncodingJSON(f *testing.F) {
	f.Add("DOE^JANE")
	f.Add("<&>")
	f.Add("\x7f\x00")
	f.Fuzz(checkStr)
}

func checkStr(t *testing.T, s string) {
	want, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var e encoder
	e.str(s)
	if !bytes.Equal(e.buf.Bytes(), want) {
		t.Errorf("str(%q) = %s, want %s", s, e.buf.Bytes(), want)
	}
}
