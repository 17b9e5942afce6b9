package tokenserver

import "testing"

// FuzzParseClients feeds arbitrary registry files: parsing must not
// panic, and whatever it accepts is a usable registration.
func FuzzParseClients(f *testing.F) {
	for _, s := range []string{
		"clients:\n  - id: a\n    jwksUrl: https://a.test/jwks\n    scope: system/ImagingStudy.rs\n",
		"clients:\n  - id: a\n    jwks: {keys: [{kty: EC, crv: P-256, kid: k, x: f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU, y: x_FEzRu9m36HLN_tf1ZgY5aQhwv6gZ9DGBBTsM4xn1E}]}\n    scope: system/*.rs\n    purposeOfUse: [TREAT]\n",
		"clients: []\n", "", "clients: [&a {id: *a}]", "clients:\n  - {id: a, id: b}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cs, err := parseClients(data)
		if err != nil {
			return
		}
		for _, id := range cs.IDs() {
			c, ok := cs.Lookup(id)
			if !ok || c.ID != id || len(c.Scopes) == 0 || (c.JWKSURL == "") == (c.keys == nil) {
				t.Fatalf("accepted an unusable client %+v from %q", c, data)
			}
		}
	})
}
