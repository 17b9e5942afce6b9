package search

import (
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/priorflow/priorflow/dimse"
)

// SourceConfig is one entry of the `sources:` list of the Priorflow YAML
// config (PRIORFLOW_CONFIG). Secrets are never inline: Auth names files or
// environment variables that hold them.
type SourceConfig struct {
	Name   string
	Kind   Kind
	URL    string
	Issuer string
	Match  Match
	Mode   Mode
	// Timeout bounds one search of the source, retries included.
	Timeout time.Duration
	// RetrieveTimeout bounds how long a WADO-RS retrieval may wait for a
	// byte from the source: for the response headers (a source may build a
	// large study's multipart answer before it sends them) and for each
	// next byte of the body, so a transfer that stalls is abandoned and
	// retried. It does not bound a transfer that keeps moving.
	RetrieveTimeout time.Duration
	Concurrency     int
	// Retries is how many times a failed query is retried within Timeout.
	Retries int
	Auth    Auth
	// CalledAETitle is the AE title of a DIMSE source, CallingAETitle
	// Priorflow's own towards it (default DefaultCallingAETitle).
	CalledAETitle, CallingAETitle string
	// RetrieveMethod is how a DIMSE source is pulled from: RetrieveCGet
	// (the default) or RetrieveCMove.
	RetrieveMethod string
	// StoreAETitle is the AE title a DIMSE source sends a C-MOVE's
	// objects under, when not its CalledAETitle (a PACS whose sending
	// side has an AE title of its own).
	StoreAETitle string
	Line         int
}

// Info returns the SourceInfo of the configuration.
func (c *SourceConfig) Info() SourceInfo {
	return SourceInfo{Name: c.Name, Kind: c.Kind, URL: c.URL, Issuer: c.Issuer, Match: c.Match, Mode: c.Mode}
}

// Auth says how to authenticate to a source: at most one of a bearer
// token, basic and OAuth, each of which may be combined with mTLS.
type Auth struct {
	BearerTokenFile string
	BearerTokenEnv  string
	Basic           *BasicAuth
	MTLS            *MTLS
	OAuth           *OAuth
}

// BasicAuth is HTTP basic authentication; the password comes from a file
// or an environment variable.
type BasicAuth struct {
	Username     string
	PasswordFile string
	PasswordEnv  string
}

// MTLS is a client certificate, and the CA that signs the server's.
type MTLS struct {
	CertFile, KeyFile, CAFile string
}

// OAuth is the OAuth 2.0 client credentials grant (RFC 6749 section 4.4)
// with a signed JWT as client authentication (RFC 7523 section 2.2), as
// SMART Backend Services profile it (SMART App Launch 2.x, "Backend
// Services"): Priorflow signs an assertion with its private key, trades it
// at TokenURL for an access token, and sends that as a bearer token. The
// key is read from PrivateKeyFile, never from the config.
type OAuth struct {
	TokenURL string
	ClientID string
	// PrivateKeyFile holds the signing key: a JWK or JWK Set (JSON) or a
	// PEM key. RSA keys sign with RS384, EC P-384 keys with ES384.
	PrivateKeyFile string
	// Scope is the space-separated scopes requested, such as
	// "system/ImagingStudy.rs system/Patient.rs".
	Scope string
}

// Source defaults.
const (
	DefaultTimeout         = 10 * time.Second
	DefaultRetrieveTimeout = 5 * time.Minute
	DefaultConcurrency     = 4
	DefaultRetries         = 2
	// DefaultCallingAETitle is the AE title Priorflow calls a DIMSE
	// source with; the PACS must know it (and its address) to answer.
	DefaultCallingAETitle = "PRIORFLOW"
)

// Retrieve methods of a DIMSE source.
const (
	// RetrieveCGet: the objects come back on the association that asked
	// (C-GET); the PACS needs to know nothing more of Priorflow.
	RetrieveCGet = "c-get"
	// RetrieveCMove: the PACS sends the objects to the prefetcher's
	// Storage SCP (C-MOVE); it must know the SCP's AE title and address.
	RetrieveCMove = "c-move"
)

// ConfigProblem is one error in the file.
type ConfigProblem struct {
	Line, Column int
	Msg          string
}

// ConfigError lists every problem found in the sources of a config file.
type ConfigError struct {
	File     string
	Problems []ConfigProblem
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "%s:%d:%d: %s", e.File, p.Line, p.Column, p.Msg)
	}
	return b.String()
}

// LoadSources reads the `sources:` of the YAML config file at path.
func LoadSources(path string) ([]*SourceConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load sources: %w", err)
	}
	return ParseSources(path, data)
}

// ParseSources reads the `sources:` key of a Priorflow YAML config; other
// top-level keys (rules: …) belong to other packages and are ignored. Every
// problem is reported at once, each with its line. A file without sources
// yields none.
func ParseSources(name string, data []byte) ([]*SourceConfig, error) {
	p := &cfgParser{err: &ConfigError{File: name}}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		line, msg := 0, err.Error()
		if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
			line, _ = strconv.Atoi(m[1])
			msg = m[2]
		}
		p.err.Problems = append(p.err.Problems, ConfigProblem{Line: line, Msg: msg})
		return nil, p.err
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, nil
	}
	root := doc.Content[0]
	var out []*SourceConfig
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value == "sources" {
			out = p.sources(root.Content[i+1])
		}
	}
	if len(p.err.Problems) > 0 {
		slices.SortStableFunc(p.err.Problems, func(a, b ConfigProblem) int { return a.Line - b.Line })
		return nil, p.err
	}
	return out, nil
}

var (
	yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)
	sourceName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
)

type cfgParser struct{ err *ConfigError }

func (p *cfgParser) add(n *yaml.Node, format string, args ...any) {
	p.err.Problems = append(p.err.Problems, ConfigProblem{Line: n.Line, Column: n.Column, Msg: fmt.Sprintf(format, args...)})
}

func (p *cfgParser) sources(n *yaml.Node) []*SourceConfig {
	if n.Kind != yaml.SequenceNode {
		p.add(n, "sources: must be a list of sources")
		return nil
	}
	var out []*SourceConfig
	seen := map[string]int{}
	for _, item := range n.Content {
		s := p.source(item)
		if s == nil {
			continue
		}
		if first, dup := seen[s.Name]; dup && s.Name != "" {
			p.add(item, "duplicate source name %q (first at line %d)", s.Name, first)
			continue
		}
		seen[s.Name] = s.Line
		out = append(out, s)
	}
	return out
}

func (p *cfgParser) scalar(n *yaml.Node, key string) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.Value == "" {
		p.add(n, "%s: want a single value", key)
		return "", false
	}
	return n.Value, true
}

func (p *cfgParser) source(n *yaml.Node) *SourceConfig {
	if n.Kind != yaml.MappingNode {
		p.add(n, "a source must be a mapping")
		return nil
	}
	s := &SourceConfig{Line: n.Line, Match: MatchIdentifier, Mode: ModeImport, Timeout: DefaultTimeout,
		RetrieveTimeout: DefaultRetrieveTimeout, Concurrency: DefaultConcurrency, Retries: DefaultRetries}
	keys := map[string]bool{}
	// Nodes checked once the kind is known, which may come after them.
	var urlNode, modeNode, authNode *yaml.Node
	var dimseNodes []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if keys[k.Value] {
			p.add(k, "key %s: given twice", k.Value)
			continue
		}
		keys[k.Value] = true
		switch k.Value {
		case "name":
			if x, ok := p.scalar(v, "name"); ok {
				if !sourceName.MatchString(x) {
					p.add(v, "name %q: use letters, digits, '.', '_' or '-' (at most 64)", x)
				}
				s.Name = x
			}
		case "kind":
			if x, ok := p.scalar(v, "kind"); ok {
				switch Kind(x) {
				case KindDICOMweb, KindFHIR, KindPriorflow, KindDIMSE:
					s.Kind = Kind(x)
				default:
					p.add(v, "kind %q: want dicomweb, dimse, fhir or priorflow", x)
				}
			}
		case "url":
			urlNode = v
		case "calledAETitle", "callingAETitle", "storeAETitle":
			if x, ok := p.scalar(v, k.Value); ok {
				if err := dimse.CheckAETitle(x); err != nil {
					p.add(v, "%s: %v", k.Value, err)
				} else if k.Value == "calledAETitle" {
					s.CalledAETitle = x
				} else if k.Value == "callingAETitle" {
					s.CallingAETitle = x
				} else {
					s.StoreAETitle = x
				}
			}
			dimseNodes = append(dimseNodes, k)
		case "retrieveMethod":
			if x, ok := p.scalar(v, k.Value); ok {
				if x != RetrieveCGet && x != RetrieveCMove {
					p.add(v, "retrieveMethod %q: want c-get or c-move", x)
				}
				s.RetrieveMethod = x
			}
			dimseNodes = append(dimseNodes, k)
		case "issuer":
			if x, ok := p.scalar(v, "issuer"); ok {
				s.Issuer = x
			}
		case "match":
			if x, ok := p.scalar(v, "match"); ok {
				if m := Match(x); m == MatchIdentifier || m == MatchDemographics {
					s.Match = m
				} else {
					p.add(v, "match %q: want identifier or demographics", x)
				}
			}
		case "mode":
			modeNode = v
			if x, ok := p.scalar(v, "mode"); ok {
				if m := Mode(x); m == ModeImport || m == ModeRemoteView {
					s.Mode = m
				} else {
					p.add(v, "mode %q: want import or remote-view", x)
				}
			}
		case "timeout":
			if x, ok := p.scalar(v, "timeout"); ok {
				d, err := time.ParseDuration(x)
				if err != nil || d <= 0 || d > 10*time.Minute {
					p.add(v, "timeout %q: want a duration such as 10s, at most 10m", x)
				} else {
					s.Timeout = d
				}
			}
		case "retrieveTimeout":
			if x, ok := p.scalar(v, "retrieveTimeout"); ok {
				d, err := time.ParseDuration(x)
				if err != nil || d < time.Second || d > time.Hour {
					p.add(v, "retrieveTimeout %q: want a duration such as 5m, from 1s to 1h", x)
				} else {
					s.RetrieveTimeout = d
				}
			}
		case "concurrency":
			s.Concurrency = p.intIn(v, "concurrency", 1, 64, s.Concurrency)
		case "retries":
			s.Retries = p.intIn(v, "retries", 0, 10, s.Retries)
		case "auth":
			authNode = v
			s.Auth = p.auth(v)
		default:
			p.add(k, "unknown key %q in source (known: name, kind, url, issuer, match, mode, timeout, retrieveTimeout, concurrency, retries, auth, calledAETitle, callingAETitle, retrieveMethod, storeAETitle)", k.Value)
		}
	}
	if s.Name == "" {
		p.add(n, "source has no name")
	}
	if !keys["kind"] {
		p.add(n, "source %s has no kind (dicomweb, dimse, fhir or priorflow)", s.Name)
	}
	if urlNode == nil {
		p.add(n, "source %s has no url", s.Name)
	} else if x, ok := p.scalar(urlNode, "url"); ok {
		if s.Kind == KindDIMSE {
			s.URL = p.dimseURL(urlNode, x)
		} else {
			s.URL = p.httpURL(urlNode, x)
		}
	}
	if s.Kind == KindDIMSE {
		p.dimse(n, s, keys["calledAETitle"], modeNode, authNode)
	} else {
		for _, k := range dimseNodes {
			p.add(k, "%s: only a source of kind dimse has it", k.Value)
		}
	}
	if s.Match == MatchIdentifier && s.Issuer == "" && keys["kind"] {
		p.add(n, "source %s: match identifier needs issuer: the assigning authority of its patient IDs", s.Name)
	}
	return s
}

// httpURL checks the url of a DICOMweb or FHIR source.
func (p *cfgParser) httpURL(v *yaml.Node, x string) string {
	u, err := url.Parse(x)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		p.add(v, "url: want an absolute http or https URL")
	case u.User != nil:
		p.add(v, "url: credentials must not be written in the URL; use auth: with a file")
	default:
		return strings.TrimSuffix(x, "/")
	}
	return ""
}

// dimseURL checks the url of a DIMSE source: dicom://host:port, the
// address of the PACS's DICOM port.
func (p *cfgParser) dimseURL(v *yaml.Node, x string) string {
	u, err := url.Parse(x)
	if err != nil || u.Scheme != "dicom" || u.Hostname() == "" || u.Port() == "" || u.User != nil ||
		strings.Trim(u.Path, "/") != "" || u.RawQuery != "" || u.Fragment != "" {
		p.add(v, "url: want dicom://host:port, the address of the source's DICOM port")
		return ""
	}
	if port, err := strconv.Atoi(u.Port()); err != nil || port < 1 || port > 65535 {
		p.add(v, "url: port %q: want 1 to 65535", u.Port())
		return ""
	}
	return "dicom://" + u.Host
}

// dimse checks what a DIMSE source needs and refuses what it cannot have.
func (p *cfgParser) dimse(n *yaml.Node, s *SourceConfig, called bool, modeNode, authNode *yaml.Node) {
	if !called {
		p.add(n, "source %s: kind dimse needs calledAETitle, the AE title of the source", s.Name)
	}
	if s.CallingAETitle == "" {
		s.CallingAETitle = DefaultCallingAETitle
	}
	if s.RetrieveMethod == "" {
		s.RetrieveMethod = RetrieveCGet
	}
	if s.StoreAETitle != "" && s.RetrieveMethod != RetrieveCMove {
		p.add(n, "source %s: storeAETitle is for retrieveMethod c-move (a C-GET's objects come back on its own association)", s.Name)
	}
	if s.Mode == ModeRemoteView && modeNode != nil {
		p.add(modeNode, "mode remote-view: a DIMSE source has no address a viewer can open; use import")
	}
	if a := s.Auth; authNode != nil && (a.BearerTokenFile != "" || a.BearerTokenEnv != "" || a.Basic != nil || a.OAuth != nil) {
		p.add(authNode, "auth: a DIMSE source takes only mTLS (DICOM TLS); the source knows Priorflow by callingAETitle, address and certificate")
	}
}

func (p *cfgParser) intIn(v *yaml.Node, key string, lo, hi, def int) int {
	x, ok := p.scalar(v, key)
	if !ok {
		return def
	}
	n, err := strconv.Atoi(x)
	if err != nil || n < lo || n > hi {
		p.add(v, "%s %q: want a whole number from %d to %d", key, x, lo, hi)
		return def
	}
	return n
}

// secretKeys are keys that would put a secret in the file.
var secretKeys = map[string]bool{"bearerToken": true, "token": true, "password": true, "key": true, "secret": true,
	"accessToken": true, "clientSecret": true, "privateKey": true, "assertion": true, "clientAssertion": true}

func (p *cfgParser) auth(n *yaml.Node) Auth {
	var a Auth
	if n.Kind != yaml.MappingNode {
		p.add(n, "auth: want a mapping such as {bearerTokenFile: /run/secrets/token}")
		return a
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch {
		case secretKeys[k.Value]:
			// The value is not echoed: it may be the secret itself.
			p.add(k, "auth.%s: secrets are not written in the config; use a file (…File) or an environment variable (…Env)", k.Value)
		case k.Value == "bearerTokenFile":
			a.BearerTokenFile, _ = p.scalar(v, "auth.bearerTokenFile")
		case k.Value == "bearerTokenEnv":
			a.BearerTokenEnv, _ = p.scalar(v, "auth.bearerTokenEnv")
		case k.Value == "basic":
			a.Basic = p.basic(v)
		case k.Value == "mTLS" || k.Value == "mtls":
			a.MTLS = p.mtls(v)
		case k.Value == "oauth":
			a.OAuth = p.oauth(v)
		default:
			p.add(k, "unknown key %q in auth (known: bearerTokenFile, bearerTokenEnv, basic, oauth, mTLS)", k.Value)
		}
	}
	bearer := a.BearerTokenFile != "" || a.BearerTokenEnv != ""
	switch {
	case a.OAuth != nil && (bearer || a.Basic != nil):
		p.add(n, "auth: oauth obtains its own bearer token; do not combine it with a bearer token or basic")
	case bearer && a.Basic != nil:
		p.add(n, "auth: choose a bearer token or basic, not both")
	}
	if a.BearerTokenFile != "" && a.BearerTokenEnv != "" {
		p.add(n, "auth: choose bearerTokenFile or bearerTokenEnv, not both")
	}
	return a
}

func (p *cfgParser) basic(n *yaml.Node) *BasicAuth {
	b := &BasicAuth{}
	if n.Kind != yaml.MappingNode {
		p.add(n, "auth.basic: want {username, passwordFile}")
		return b
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch {
		case secretKeys[k.Value]:
			p.add(k, "auth.basic.%s: secrets are not written in the config; use passwordFile or passwordEnv", k.Value)
		case k.Value == "username":
			b.Username, _ = p.scalar(v, "auth.basic.username")
		case k.Value == "passwordFile":
			b.PasswordFile, _ = p.scalar(v, "auth.basic.passwordFile")
		case k.Value == "passwordEnv":
			b.PasswordEnv, _ = p.scalar(v, "auth.basic.passwordEnv")
		default:
			p.add(k, "unknown key %q in auth.basic (known: username, passwordFile, passwordEnv)", k.Value)
		}
	}
	if b.Username == "" {
		p.add(n, "auth.basic: username is missing")
	}
	if (b.PasswordFile == "") == (b.PasswordEnv == "") {
		p.add(n, "auth.basic: give exactly one of passwordFile and passwordEnv")
	}
	return b
}

func (p *cfgParser) mtls(n *yaml.Node) *MTLS {
	m := &MTLS{}
	if n.Kind != yaml.MappingNode {
		p.add(n, "auth.mTLS: want {certFile, keyFile, caFile}")
		return m
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch k.Value {
		case "certFile":
			m.CertFile, _ = p.scalar(v, "auth.mTLS.certFile")
		case "keyFile":
			m.KeyFile, _ = p.scalar(v, "auth.mTLS.keyFile")
		case "caFile":
			m.CAFile, _ = p.scalar(v, "auth.mTLS.caFile")
		default:
			p.add(k, "unknown key %q in auth.mTLS (known: certFile, keyFile, caFile)", k.Value)
		}
	}
	if (m.CertFile == "") != (m.KeyFile == "") {
		p.add(n, "auth.mTLS: certFile and keyFile go together")
	}
	return m
}

func (p *cfgParser) oauth(n *yaml.Node) *OAuth {
	o := &OAuth{}
	if n.Kind != yaml.MappingNode {
		p.add(n, "auth.oauth: want {tokenUrl, clientId, privateKeyFile, scope}")
		return o
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch {
		case secretKeys[k.Value]:
			p.add(k, "auth.oauth.%s: secrets are not written in the config; use privateKeyFile", k.Value)
		case k.Value == "tokenUrl":
			if x, ok := p.scalar(v, "auth.oauth.tokenUrl"); ok {
				if msg := checkTokenURL(x); msg != "" {
					p.add(v, "auth.oauth.tokenUrl: %s", msg)
				} else {
					o.TokenURL = x
				}
			}
		case k.Value == "clientId":
			o.ClientID, _ = p.scalar(v, "auth.oauth.clientId")
		case k.Value == "privateKeyFile":
			o.PrivateKeyFile, _ = p.scalar(v, "auth.oauth.privateKeyFile")
		case k.Value == "scope":
			if x, ok := p.scalar(v, "auth.oauth.scope"); ok {
				if !scopeRE.MatchString(x) {
					p.add(v, "auth.oauth.scope: want space-separated scopes such as system/ImagingStudy.rs (RFC 6749 section 3.3)")
				} else {
					o.Scope = x
				}
			}
		default:
			p.add(k, "unknown key %q in auth.oauth (known: tokenUrl, clientId, privateKeyFile, scope)", k.Value)
		}
	}
	// Keys given with a bad value were reported above; report the absent.
	have := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		have[n.Content[i].Value] = true
	}
	for _, key := range []string{"tokenUrl", "clientId", "privateKeyFile", "scope"} {
		if !have[key] {
			p.add(n, "auth.oauth: %s is missing", key)
		}
	}
	return o
}

// scopeRE is a scope parameter: scope tokens of %x21 / %x23-5B / %x5D-7E
// separated by single spaces (RFC 6749 section 3.3).
var scopeRE = regexp.MustCompile(`^[\x21\x23-\x5B\x5D-\x7E]+( [\x21\x23-\x5B\x5D-\x7E]+)*$`)

// checkTokenURL returns what is wrong with a token endpoint URL, or "".
// The endpoint receives a signed assertion and returns an access token, so
// plain HTTP is only accepted to a loopback host (a local test peer).
func checkTokenURL(x string) string {
	u, err := url.Parse(x)
	switch {
	case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
		return "want an absolute https URL"
	case u.User != nil:
		return "credentials must not be written in the URL"
	case u.Fragment != "":
		return "a token endpoint URL has no fragment"
	case u.Scheme == "http" && !isLoopback(u.Hostname()):
		return "want https: the endpoint returns access tokens (http only to a loopback host)"
	}
	return ""
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}
