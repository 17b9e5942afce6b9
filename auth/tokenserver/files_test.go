package tokenserver_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/priorflow/priorflow/auth/tokenserver"
	"github.com/priorflow/priorflow/internal/database/dbtest"
)

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadClients(t *testing.T) {
	t.Parallel()
	keys := clientKeys(t)
	path := writeFile(t, "clients.yaml", `
clients:
  - id: ris-backend
    name: Hospital RIS
    jwks: `+publicJSON(t, keys[0], keys[1])+`
    scope: system/ImagingStudy.rs system/Appointment.cu
    purposeOfUse: [TREAT, ETREAT]
  - id: remote
    jwksUrl: https://ris.example.org/.well-known/jwks.json
    scope: openid system/*.rs
`)
	cs, err := tokenserver.LoadClients(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(cs.IDs(), " "), "ris-backend remote"; got != want {
		t.Errorf("IDs()=%q, want %q", got, want)
	}
	ris, ok := cs.Lookup("ris-backend")
	if !ok {
		t.Fatal("ris-backend is not registered")
	}
	if ris.Name != "Hospital RIS" || ris.Scopes.String() != "system/ImagingStudy.rs system/Appointment.cu" || strings.Join(ris.PurposeOfUse, ",") != "TREAT,ETREAT" {
		t.Errorf("ris-backend=%+v", ris)
	}
	remote, _ := cs.Lookup("remote")
	if remote.JWKSURL != "https://ris.example.org/.well-known/jwks.json" || remote.Scopes.String() != "system/*.rs" {
		t.Errorf("remote=%+v", remote)
	}
	if _, ok := cs.Lookup("nobody"); ok {
		t.Error("Lookup found an unregistered client")
	}
}

func TestLoadClients_ReportsEveryProblem(t *testing.T) {
	t.Parallel()
	keys := clientKeys(t)
	private, err := json.Marshal(keys[0])
	if err != nil {
		t.Fatal(err)
	}
	noKid, err := keys[2].PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	_ = noKid.Remove(jwk.KeyIDKey)
	noKidJSON, _ := json.Marshal(map[string]any{"keys": []any{noKid}})
	path := writeFile(t, "clients.yaml", `
clients:
  - id: a
    jwks: {"keys": [`+string(private)+`]}
    scope: system/ImagingStudy.rs
    jwks_url: https://typo.example.org
  - id: b
    jwks: `+publicJSON(t, keys[1])+`
  - id: c
    jwks: `+publicJSON(t, keys[1])+`
    scope: system/ImagingStudy.sr
  - id: d
    scope: system/ImagingStudy.rs
  - id: e
    jwks: `+publicJSON(t, keys[1])+`
    jwksUrl: https://e.example.org/jwks
    scope: system/ImagingStudy.rs
  - id: f
    jwksUrl: http://f.example.org/jwks
    scope: system/ImagingStudy.rs
  - id: g
    jwks: {"keys": [{"kty": "oct", "kid": "s", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"}]}
    scope: system/ImagingStudy.rs
  - id: h
    jwks: `+string(noKidJSON)+`
    scope: openid
  - id: a
    jwksUrl: https://a.example.org/jwks
    scope: system/ImagingStudy.rs
  - name: nameless
    jwksUrl: https://x.example.org/jwks
    scope: system/ImagingStudy.rs
    purposeOfUse: TREAT
extra: true
`)
	_, err = tokenserver.LoadClients(path)
	if err == nil {
		t.Fatal("LoadClients accepted the file")
	}
	msg := err.Error()
	for _, want := range []string{
		path,
		`unknown key "extra"`,
		`client 1 (a): line 6: unknown key "jwks_url"`,
		`client 1 (a): line 4: jwks key 1 (kid ` + kidOf(keys[0]) + `) is a private key`,
		`client 2 (b): line 7: scope is required`,
		`client 3 (c): line 11: scope "system/ImagingStudy.sr": permissions must be letters of cruds`,
		`client 4 (d): line 12: jwks or jwksUrl is required`,
		`client 5 (e): line 14: set either jwks or jwksUrl, not both`,
		`client 6 (f): line 18: jwksUrl "http://f.example.org/jwks" must use https`,
		`client 7 (g): line 22: jwks key 1 (kid s) is a symmetric key`,
		`client 8 (h): line 25: jwks key 1 has no kid`,
		`client 8 (h): line 26: scope "openid" has no resource scopes`,
		`client 9 (a): line 27: id "a" is registered twice`,
		`client 10: line 30: id is required`,
		`client 10: line 33: purposeOfUse must be a list`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("the error does not report %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, `"d":`) {
		t.Error("the error repeats the private key")
	}
}

func kidOf(k jwk.Key) string {
	kid, _ := k.KeyID()
	return kid
}

func TestLoadClients_Files(t *testing.T) {
	t.Parallel()
	for name, content := range map[string]string{
		"empty":        "",
		"not YAML":     "clients: [",
		"no clients":   "other: 1\n",
		"not a list":   "clients: {id: a}\n",
		"not a map":    "- a\n- b\n",
		"client a str": "clients: [ris]\n",
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := tokenserver.LoadClients(writeFile(t, "c.yaml", content)); err == nil {
				t.Error("LoadClients accepted the file")
			}
		})
	}
	if _, err := tokenserver.LoadClients(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Error("LoadClients accepted a missing file")
	}
}

func TestLoadOrCreateKey(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "secrets", "auth")
	path := filepath.Join(dir, "signing.jwk")
	k, err := tokenserver.LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if alg, _ := k.Algorithm(); alg.String() != "ES384" {
		t.Errorf("alg=%v, want ES384", alg)
	}
	if private, _ := jwk.IsPrivateKey(k); !private {
		t.Error("the key is not private")
	}
	thumb, err := k.Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := kidOf(k), base64.RawURLEncoding.EncodeToString(thumb); got != want {
		t.Errorf("kid=%q, want the RFC 7638 thumbprint %q", got, want)
	}
	for p, want := range map[string]fs.FileMode{path: 0o600, dir: 0o700} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s has mode %o, want %o", p, got, want)
		}
	}
	again, err := tokenserver.LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if kidOf(again) != kidOf(k) {
		t.Errorf("reloaded kid %q, want %q", kidOf(again), kidOf(k))
	}
}

func TestLoadOrCreateKey_Concurrent(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "signing.jwk")
	kids := make([]string, 8)
	var wg sync.WaitGroup
	for i := range kids {
		wg.Go(func() {
			k, err := tokenserver.LoadOrCreateKey(path)
			if err != nil {
				t.Error(err)
				return
			}
			kids[i] = kidOf(k)
		})
	}
	wg.Wait()
	for _, kid := range kids {
		if kid != kids[0] {
			t.Fatalf("replicas starting together got different keys: %v", kids)
		}
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("the directory holds %d files, want the key alone", len(entries))
	}
}

func TestLoadOrCreateKey_PEM(t *testing.T) {
	t.Parallel()
	ec, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, err := x509.MarshalPKCS8PrivateKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	sec1, err := x509.MarshalECPrivateKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaDER, err := x509.MarshalPKCS8PrivateKey(rk)
	if err != nil {
		t.Fatal(err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pemOf := func(typ string, der []byte) string {
		return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
	}
	for _, tc := range []struct {
		name, content, alg string
	}{
		{"EC PKCS #8", pemOf("PRIVATE KEY", ecDER), "ES384"},
		{"EC SEC 1", pemOf("EC PRIVATE KEY", sec1), "ES384"},
		{"RSA PKCS #8", pemOf("PRIVATE KEY", rsaDER), "RS384"},
		{"public key", pemOf("PUBLIC KEY", pubDER), ""},
		{"garbage", "not a key", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := tokenserver.LoadOrCreateKey(writeFile(t, "key.pem", tc.content))
			if tc.alg == "" {
				if err == nil {
					t.Fatal("LoadOrCreateKey accepted the file")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if alg, _ := k.Algorithm(); alg.String() != tc.alg {
				t.Errorf("alg=%v, want %s", alg, tc.alg)
			}
			if kidOf(k) == "" {
				t.Error("the key has no kid")
			}
			// It signs assertions and tokens alike.
			if _, err := tokenserver.ClientAssertion("c", "https://as.test/token", k); err != nil {
				t.Errorf("ClientAssertion: %v", err)
			}
		})
	}
}

func TestNew_Config(t *testing.T) {
	t.Parallel()
	replay, err := tokenserver.NewReplayStore(dbtest.NewPool(t), dbtest.Logger())
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := clientKeys(t)[0].PublicKey()
	_, err = tokenserver.New(tokenserver.Config{TokenURL: "/token", TokenTTL: -time.Second, Key: pub}, replay, dbtest.Logger())
	if err == nil {
		t.Fatal("New accepted the config")
	}
	for _, want := range []string{`issuer "" is not an absolute`, `token URL "/token" is not an absolute`, `audience "" is not`, "negative", "not an asymmetric private key", "client registry is required"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not report %q", err, want)
		}
	}
	if _, err := tokenserver.New(tokenserver.Config{}, nil, dbtest.Logger()); err == nil {
		t.Error("New accepted a nil replay store")
	}
}

func TestReplayStore(t *testing.T) {
	t.Parallel()
	pool := dbtest.NewPool(t)
	replay, err := tokenserver.NewReplayStore(pool, dbtest.Logger())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `INSERT INTO oauth_assertion_jti VALUES ('old', 'j', now() - interval '1 hour')`); err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(5 * time.Minute)
	for _, tc := range []struct {
		client, jti string
		fresh       bool
	}{
		{"a", "j1", true}, {"a", "j1", false}, {"b", "j1", true}, {"a", "j2", true},
	} {
		got, err := replay.Use(ctx, tc.client, tc.jti, exp)
		if err != nil {
			t.Fatal(err)
		}
		if got != tc.fresh {
			t.Errorf("Use(%s, %s)=%v, want %v", tc.client, tc.jti, got, tc.fresh)
		}
	}
	// The first use swept the expired row.
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM oauth_assertion_jti WHERE client_id = 'old'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d expired rows left, want 0", n)
	}
	// The sweep uses the expiry index.
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SET LOCAL enable_seqscan = off`); err != nil {
		t.Fatal(err)
	}
	var plan strings.Builder
	rows, err := tx.Query(ctx, `EXPLAIN DELETE FROM oauth_assertion_jti WHERE expires_at < $1`, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		plan.WriteString(line + "\n")
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(plan.String(), "oauth_assertion_jti_expires") {
		t.Errorf("the sweep does not use the expiry index:\n%s", plan.String())
	}
}
