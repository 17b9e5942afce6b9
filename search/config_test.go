package search_test

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/priorflow/priorflow/search"
)

func TestParseSources(t *testing.T) {
	t.Parallel()
	t.Run("valid source with defaults, rules ignored", func(t *testing.T) {
		srcs, err := search.ParseSources("p.yaml", []byte(`rules:
  - name: r
    on: [ed-arrival]
sources:
  - name: hospital-b
    kind: dicomweb
    url: http://127.0.0.1:8042/dicom-web/
    issuer: HOSP-B
    timeout: 3s
    auth: {bearerTokenFile: /run/secrets/b-token}
`))
		if err != nil {
			t.Fatal(err)
		}
		s := srcs[0]
		if s.URL != "http://127.0.0.1:8042/dicom-web" || s.Timeout != 3*time.Second || s.Match != search.MatchIdentifier ||
			s.Mode != search.ModeImport || s.Concurrency != search.DefaultConcurrency || s.Auth.BearerTokenFile != "/run/secrets/b-token" || s.Line != 5 {
			t.Errorf("source = %+v", s)
		}
		if got, want := s.RetrieveTimeout, search.DefaultRetrieveTimeout; got != want {
			t.Errorf("RetrieveTimeout = %v, want the default %v", got, want)
		}
	})
	t.Run("retrieveTimeout set, and out of range", func(t *testing.T) {
		srcs, err := search.ParseSources("p.yaml", []byte(`sources:
  - name: a
    kind: dicomweb
    url: http://127.0.0.1:8042/dicom-web
    issuer: A
    timeout: 3s
    retrieveTimeout: 20m
`))
		if err != nil {
			t.Fatal(err)
		}
		if got, want := srcs[0].RetrieveTimeout, 20*time.Minute; got != want {
			t.Errorf("RetrieveTimeout = %v, want %v", got, want)
		}
		if got, want := srcs[0].Timeout, 3*time.Second; got != want {
			t.Errorf("Timeout = %v, want %v", got, want)
		}
		_, err = search.ParseSources("p.yaml", []byte(`sources:
  - name: a
    kind: dicomweb
    url: http://127.0.0.1:8042/dicom-web
    issuer: A
    retrieveTimeout: 500ms
  - name: b
    kind: dicomweb
    url: http://127.0.0.1:8042/dicom-web
    issuer: B
    retrieveTimeout: soon
`))
		msg := ""
		if err != nil {
			msg = err.Error()
		}
		for _, want := range []string{"p.yaml:6:22: retrieveTimeout \"500ms\"", "p.yaml:11:22: retrieveTimeout \"soon\""} {
			if !strings.Contains(msg, want) {
				t.Errorf("missing %q in\n%s", want, msg)
			}
		}
	})
	t.Run("every problem with its line, secrets not echoed", func(t *testing.T) {
		_, err := search.ParseSources("p.yaml", []byte(`sources:
  - name: a
    kind: dimse
    url: http://x/
    issuer: A
  - name: b
    kind: fhir
    url: ftp://x
    match: fuzzy
    auth: {password: hunter2}
`))
		var ce *search.ConfigError
		if !errors.As(err, &ce) {
			t.Fatalf("err = %v", err)
		}
		msg := err.Error()
		for _, want := range []string{"p.yaml:4:10: url: want dicom://host:port", "p.yaml:2:5: source a: kind dimse needs calledAETitle",
			"p.yaml:8:10: url:", "p.yaml:9:12: match", "p.yaml:10:12: auth.password"} {
			if !strings.Contains(msg, want) {
				t.Errorf("missing %q in\n%s", want, msg)
			}
		}
		if strings.Contains(msg, "hunter2") {
			t.Error("the secret is echoed")
		}
	})
}

func TestParseSources_DIMSE(t *testing.T) {
	t.Parallel()
	t.Run("a PACS", func(t *testing.T) {
		srcs, err := search.ParseSources("p.yaml", []byte(`sources:
  - name: pacs
    kind: dimse
    url: dicom://pacs.hospital-a.example:11112
    calledAETitle: PACS_A
    issuer: HOSP-A
  - name: pacs-b
    kind: dimse
    url: dicom://10.0.0.7:104/
    calledAETitle: ARCHIVE
    callingAETitle: PF_NODE_2
    retrieveMethod: c-move
    storeAETitle: ARCHIVE_SCU
    issuer: HOSP-B
    auth:
      mTLS: {certFile: /run/secrets/pf.crt, keyFile: /run/secrets/pf.key, caFile: /etc/priorflow/pacs-ca.pem}
`))
		if err != nil {
			t.Fatal(err)
		}
		a, b := srcs[0], srcs[1]
		if a.URL != "dicom://pacs.hospital-a.example:11112" || a.CalledAETitle != "PACS_A" || a.CallingAETitle != search.DefaultCallingAETitle ||
			a.RetrieveMethod != search.RetrieveCGet {
			t.Errorf("pacs = %+v", a)
		}
		if b.URL != "dicom://10.0.0.7:104" || b.CalledAETitle != "ARCHIVE" || b.CallingAETitle != "PF_NODE_2" || b.Mode != search.ModeImport ||
			b.RetrieveMethod != search.RetrieveCMove || b.StoreAETitle != "ARCHIVE_SCU" ||
			b.Auth.MTLS == nil || b.Auth.MTLS.CAFile != "/etc/priorflow/pacs-ca.pem" {
			t.Errorf("pacs-b = %+v", b)
		}
	})
	t.Run("what a DIMSE source cannot have", func(t *testing.T) {
		_, err := search.ParseSources("p.yaml", []byte(`sources:
  - name: a
    kind: dimse
    url: dicom://pacs:104
    calledAETitle: WAY_TOO_LONG_AE_TITLE
    callingAETitle: "BACK\\SLASH"
    issuer: A
    mode: remote-view
    auth: {bearerTokenFile: /run/t}
  - name: b
    kind: dimse
    url: dicom://pacs
    calledAETitle: PACS
    issuer: B
    retrieveMethod: c-store
    storeAETitle: SENDER
  - name: c
    kind: dicomweb
    url: http://x/dicom-web
    calledAETitle: PACS
    issuer: C
    retrieveMethod: c-move
`))
		msg := ""
		if err != nil {
			msg = err.Error()
		}
		for _, want := range []string{"p.yaml:5:20: calledAETitle: AE title", "p.yaml:6:21: callingAETitle: AE title",
			"p.yaml:8:11: mode remote-view: a DIMSE source", "p.yaml:9:11: auth: a DIMSE source takes only mTLS",
			"p.yaml:12:10: url: want dicom://host:port", "p.yaml:15:21: retrieveMethod \"c-store\": want c-get or c-move",
			"p.yaml:10:5: source b: storeAETitle is for retrieveMethod c-move",
			"p.yaml:20:5: calledAETitle: only a source of kind dimse", "p.yaml:22:5: retrieveMethod: only a source of kind dimse"} {
			if !strings.Contains(msg, want) {
				t.Errorf("missing %q in\n%s", want, msg)
			}
		}
	})
}

func TestParseSources_OAuth(t *testing.T) {
	t.Parallel()
	t.Run("oauth with mTLS", func(t *testing.T) {
		srcs, err := search.ParseSources("p.yaml", []byte(`sources:
  - name: hospital-b
    kind: priorflow
    url: https://hospital-b.example/fhir
    issuer: HOSP-B
    auth:
      oauth:
        tokenUrl: https://hospital-b.example/auth/token
        clientId: priorflow-a
        privateKeyFile: /run/secrets/priorflow-a.jwk
        scope: system/ImagingStudy.rs system/Patient.rs system/Endpoint.rs
      mTLS: {certFile: /run/secrets/a.crt, keyFile: /run/secrets/a.key, caFile: /etc/priorflow/b-ca.pem}
`))
		if err != nil {
			t.Fatal(err)
		}
		a := srcs[0].Auth
		want := search.OAuth{TokenURL: "https://hospital-b.example/auth/token", ClientID: "priorflow-a",
			PrivateKeyFile: "/run/secrets/priorflow-a.jwk", Scope: "system/ImagingStudy.rs system/Patient.rs system/Endpoint.rs"}
		if a.OAuth == nil || *a.OAuth != want {
			t.Errorf("oauth = %+v, want %+v", a.OAuth, want)
		}
		if a.MTLS == nil || a.MTLS.CertFile != "/run/secrets/a.crt" {
			t.Errorf("mTLS = %+v", a.MTLS)
		}
	})
	t.Run("plain http token endpoint on loopback", func(t *testing.T) {
		srcs, err := search.ParseSources("p.yaml", []byte(`sources:
  - name: peer
    kind: priorflow
    url: http://127.0.0.1:8080/fhir
    issuer: P
    auth: {oauth: {tokenUrl: "http://127.0.0.1:8080/auth/token", clientId: a, privateKeyFile: /k.pem, scope: system/Patient.rs}}
`))
		if err != nil {
			t.Fatal(err)
		}
		if got := srcs[0].Auth.OAuth.TokenURL; got != "http://127.0.0.1:8080/auth/token" {
			t.Errorf("tokenUrl = %q", got)
		}
	})
	t.Run("every problem reported, inline secrets not echoed", func(t *testing.T) {
		_, err := search.ParseSources("p.yaml", []byte(`sources:
  - name: a
    kind: fhir
    url: https://a.example/fhir
    issuer: A
    auth:
      bearerTokenFile: /run/secrets/t
      oauth:
        tokenUrl: http://a.example/token
        clientId: priorflow-a
        privateKey: "-----BEGIN PRIVATE KEY-----MIIEvQIBADANBg"
        clientSecret: s3cr3t-XYZ
        scopes: system/Patient.rs
  - name: b
    kind: fhir
    url: https://b.example/fhir
    issuer: B
    auth:
      oauth: {clientId: x, scope: "system/Patient.rs  \"bad"}
  - name: c
    kind: fhir
    url: https://c.example/fhir
    issuer: C
    auth:
      basic: {username: u, passwordEnv: PW}
      oauth: {tokenUrl: "https://user:pw@c.example/token", clientId: c, privateKeyFile: /k, scope: s}
`))
		var ce *search.ConfigError
		if !errors.As(err, &ce) {
			t.Fatalf("err = %v", err)
		}
		msg := err.Error()
		for _, want := range []string{
			"p.yaml:7:7: auth: oauth obtains its own bearer token; do not combine it with a bearer token or basic",
			"p.yaml:9:19: auth.oauth.tokenUrl: want https",
			"p.yaml:9:9: auth.oauth: privateKeyFile is missing",
			"p.yaml:9:9: auth.oauth: scope is missing",
			"p.yaml:11:9: auth.oauth.privateKey: secrets are not written in the config",
			"p.yaml:12:9: auth.oauth.clientSecret: secrets are not written in the config",
			`p.yaml:13:9: unknown key "scopes" in auth.oauth (known: tokenUrl, clientId, privateKeyFile, scope)`,
			"p.yaml:19:14: auth.oauth: tokenUrl is missing",
			"p.yaml:19:14: auth.oauth: privateKeyFile is missing",
			"p.yaml:19:35: auth.oauth.scope: want space-separated scopes",
			"p.yaml:25:7: auth: oauth obtains its own bearer token; do not combine it with a bearer token or basic",
			"p.yaml:26:25: auth.oauth.tokenUrl: credentials must not be written in the URL",
		} {
			if !strings.Contains(msg, want) {
				t.Errorf("missing %q in\n%s", want, msg)
			}
		}
		for _, secret := range []string{"s3cr3t-XYZ", "MIIEvQIBADANBg", "user:pw"} {
			if strings.Contains(msg, secret) {
				t.Errorf("the secret %q is echoed:\n%s", secret, msg)
			}
		}
	})
	t.Run("unknown auth key lists oauth", func(t *testing.T) {
		_, err := search.ParseSources("p.yaml", []byte(`sources:
  - name: a
    kind: fhir
    url: https://a.example/fhir
    issuer: A
    auth: {oauth2: {}}
`))
		if err == nil || !strings.Contains(err.Error(), `unknown key "oauth2" in auth (known: bearerTokenFile, bearerTokenEnv, basic, oauth, mTLS)`) {
			t.Errorf("err = %v", err)
		}
	})
}

// The sources the shipped config shows, commented out, are valid as they
// stand once uncommented.
func TestParseSources_ShippedExample(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../config/priorflow.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, example, ok := strings.Cut(string(b), "\n# sources:\n")
	if !ok {
		t.Fatal("config/priorflow.yaml shows no sources")
	}
	yaml := "sources:\n"
	for _, line := range strings.Split(strings.TrimRight(example, "\n"), "\n") {
		yaml += strings.TrimPrefix(line, "# ") + "\n"
	}
	srcs, err := search.ParseSources("priorflow.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	if len(srcs) != 2 || srcs[1].Kind != search.KindDIMSE || srcs[1].RetrieveMethod != search.RetrieveCMove {
		t.Errorf("sources %+v, want the DICOMweb and the DIMSE example", srcs)
	}
}
