package singlebyte

import (
	"testing"

	"golang.org/x/text/encoding/charmap"
)

func TestDecode(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in   string
		cm   *charmap.Charmap
		want string
		ok   bool
	}{
		{"ASCII only", charmap.ISO8859_1, "ASCII only", true},
		{"M\xdcLLER^JOS\xc9", charmap.ISO8859_1, "MÜLLER^JOSÉ", true},
		{"\xa4URO", charmap.ISO8859_15, "€URO", true},
		{"\xd0\xc1", charmap.ISO8859_7, "ΠΑ", true},
		{"X\xa5Y", charmap.ISO8859_3, "", false}, // 0xA5 is undefined in 8859-3
	} {
		got, ok := Decode(tt.in, tt.cm)
		if got != tt.want || ok != tt.ok {
			t.Errorf("Decode(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
		b, ok := Decode([]byte(tt.in), tt.cm)
		if string(b) != tt.want || ok != tt.ok {
			t.Errorf("Decode([]byte(%q)) = %q, %v; want %q, %v", tt.in, b, ok, tt.want, tt.ok)
		}
	}
}
