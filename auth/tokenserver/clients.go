package tokenserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"go.yaml.in/yaml/v3"

	"github.com/priorflow/priorflow/auth"
)

// Client is a backend service registered to obtain tokens.
type Client struct {
	ID   string
	Name string
	// Scopes bound what the client may be granted.
	Scopes auth.Scopes
	// PurposeOfUse is copied into every token the client gets (codes of
	// http://terminology.hl7.org/CodeSystem/v3-ActReason).
	PurposeOfUse []string
	// JWKSURL is where the client publishes its public keys; empty when
	// they are registered in the file (keys).
	JWKSURL string
	keys    jwk.Set
}

// Clients is the registry of backend services, read from a YAML file:
//
//	clients:
//	  - id: ris-backend
//	    name: Hospital RIS
//	    jwks: {keys: [ ...public JWKs... ]}   # or
//	    jwksUrl: https://ris.example.org/.well-known/jwks.json
//	    scope: system/ImagingStudy.rs system/Appointment.cu
//	    purposeOfUse: [TREAT]                  # optional
type Clients struct {
	byID map[string]*Client
	ids  []string // in file order
}

// Lookup returns the client registered as id.
func (c *Clients) Lookup(id string) (*Client, bool) {
	if c == nil {
		return nil, false
	}
	cl, ok := c.byID[id]
	return cl, ok
}

// IDs returns the registered client ids in file order.
func (c *Clients) IDs() []string { return slices.Clone(c.ids) }

// clientKeys are the keys of a client entry, in file order.
var clientKeys = []string{"id", "name", "jwks", "jwksUrl", "scope", "purposeOfUse"}

// LoadClients reads the client registry at path and validates every
// entry, reporting all problems at once: unknown keys, a missing id or
// scope, malformed scopes, private or symmetric keys (only public keys
// belong in the file), keys without kid (SMART Backend Services requires
// one in every assertion), and entries with neither or both of jwks and
// jwksUrl.
func LoadClients(path string) (*Clients, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load clients: %w", err)
	}
	cs, err := parseClients(data)
	if err != nil {
		return nil, fmt.Errorf("load clients from %s: %w", path, err)
	}
	return cs, nil
}

func parseClients(data []byte) (*Clients, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("not YAML: %w", err)
	}
	if doc.Kind == 0 {
		return nil, errors.New("the file is empty; want a clients: list")
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("line %d: want a mapping with a clients: list", root.Line)
	}
	var (
		errs []error
		list *yaml.Node
	)
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if k.Value != "clients" {
			errs = append(errs, fmt.Errorf("line %d: unknown key %q (want clients)", k.Line, k.Value))
			continue
		}
		list = v
	}
	cs := &Clients{byID: map[string]*Client{}}
	switch {
	case list == nil:
		errs = append(errs, errors.New("no clients: list"))
	case list.Kind != yaml.SequenceNode:
		errs = append(errs, fmt.Errorf("line %d: clients must be a list", list.Line))
	default:
		seen := map[string]bool{}
		for i, n := range list.Content {
			cl, cerrs := parseClient(n)
			if cl != nil && cl.ID != "" {
				if seen[cl.ID] {
					cerrs = append(cerrs, fmt.Errorf("id %q is registered twice", cl.ID))
				}
				seen[cl.ID] = true
			}
			for _, err := range cerrs {
				if !strings.HasPrefix(err.Error(), "line ") {
					err = fmt.Errorf("line %d: %w", n.Line, err)
				}
				errs = append(errs, fmt.Errorf("client %d%s: %w", i+1, named(cl), err))
			}
			if len(cerrs) == 0 {
				cs.byID[cl.ID] = cl
				cs.ids = append(cs.ids, cl.ID)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return cs, nil
}

func named(cl *Client) string {
	if cl == nil || cl.ID == "" {
		return ""
	}
	return fmt.Sprintf(" (%s)", cl.ID)
}

// parseClient reads one entry and returns every problem it has.
func parseClient(n *yaml.Node) (*Client, []error) {
	if n.Kind != yaml.MappingNode {
		return nil, []error{errors.New("want a mapping of id, name, jwks or jwksUrl, scope, purposeOfUse")}
	}
	var errs []error
	fields := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch {
		case !slices.Contains(clientKeys, k.Value):
			errs = append(errs, fmt.Errorf("line %d: unknown key %q (want one of %s)", k.Line, k.Value, strings.Join(clientKeys, ", ")))
		case fields[k.Value] != nil:
			errs = append(errs, fmt.Errorf("line %d: %s is repeated", k.Line, k.Value))
		default:
			fields[k.Value] = v
		}
	}
	str := func(key string) string {
		v := fields[key]
		if v == nil {
			return ""
		}
		if v.Kind != yaml.ScalarNode {
			errs = append(errs, fmt.Errorf("line %d: %s must be a string", v.Line, key))
			return ""
		}
		return strings.TrimSpace(v.Value)
	}
	cl := &Client{ID: str("id"), Name: str("name"), JWKSURL: str("jwksUrl")}
	scope := str("scope")

	switch {
	case cl.ID == "":
		errs = append(errs, errors.New("id is required"))
	case strings.ContainsFunc(cl.ID, func(r rune) bool { return r <= ' ' || r > '~' }):
		errs = append(errs, fmt.Errorf("id %q must be printable ASCII without spaces", cl.ID))
	}

	if scope == "" {
		errs = append(errs, errors.New("scope is required: the resource scopes the client may be granted"))
	} else if ss, err := auth.ParseScopes(scope); err != nil {
		errs = append(errs, fmt.Errorf("line %d: %w", fields["scope"].Line, err))
	} else if len(ss) == 0 {
		errs = append(errs, fmt.Errorf("line %d: scope %q has no resource scopes, so the client could never be granted anything", fields["scope"].Line, scope))
	} else {
		cl.Scopes = ss
	}

	if v := fields["purposeOfUse"]; v != nil {
		var codes []string
		if err := v.Decode(&codes); err != nil {
			errs = append(errs, fmt.Errorf("line %d: purposeOfUse must be a list of codes such as [TREAT]", v.Line))
		}
		for _, c := range codes {
			if c == "" || strings.ContainsFunc(c, func(r rune) bool { return r <= ' ' || r > '~' }) {
				errs = append(errs, fmt.Errorf("purposeOfUse code %q is not a code", c))
			}
		}
		cl.PurposeOfUse = codes
	}

	jwks := fields["jwks"]
	switch {
	case jwks == nil && cl.JWKSURL == "":
		errs = append(errs, errors.New("jwks or jwksUrl is required: the client's public keys"))
	case jwks != nil && cl.JWKSURL != "":
		errs = append(errs, errors.New("set either jwks or jwksUrl, not both"))
	case cl.JWKSURL != "":
		if err := checkJWKSURL(cl.JWKSURL); err != nil {
			errs = append(errs, err)
		}
	default:
		set, kerrs := parseJWKS(jwks)
		errs = append(errs, kerrs...)
		cl.keys = set
	}
	return cl, errs
}

// checkJWKSURL wants https, except on the loopback interface, where a
// local test peer may serve plain http.
func checkJWKSURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return fmt.Errorf("jwksUrl %q is not an absolute URL", s)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		host := u.Hostname()
		if ip := net.ParseIP(host); host == "localhost" || ip != nil && ip.IsLoopback() {
			return nil
		}
	}
	return fmt.Errorf("jwksUrl %q must use https", s)
}

// parseJWKS reads a jwks: entry, refusing what is not a public signing key.
func parseJWKS(n *yaml.Node) (jwk.Set, []error) {
	var v any
	if err := n.Decode(&v); err != nil {
		return nil, []error{fmt.Errorf("line %d: jwks: %w", n.Line, err)}
	}
	data, err := json.Marshal(v)
	if err != nil {
		return nil, []error{fmt.Errorf("line %d: jwks is not a JWK Set: %w", n.Line, err)}
	}
	set, err := jwk.Parse(data)
	if err != nil {
		return nil, []error{fmt.Errorf("line %d: jwks is not a JWK Set: %w", n.Line, err)}
	}
	if set.Len() == 0 {
		return nil, []error{fmt.Errorf("line %d: jwks has no keys", n.Line)}
	}
	var errs []error
	seen := map[string]bool{}
	for i := range set.Len() {
		k, _ := set.Key(i)
		kid, _ := k.KeyID()
		what := fmt.Sprintf("line %d: jwks key %d", n.Line, i+1)
		if kid != "" {
			what += fmt.Sprintf(" (kid %s)", kid)
		}
		if k.KeyType() == jwa.OctetSeq() {
			errs = append(errs, fmt.Errorf("%s is a symmetric key; register the client's public key", what))
			continue
		}
		if private, err := jwk.IsPrivateKey(k); err != nil || private {
			errs = append(errs, fmt.Errorf("%s is a private key; register only the public half (remove \"d\" and the other private parameters) and keep the private key with the client", what))
			continue
		}
		if kid == "" {
			errs = append(errs, fmt.Errorf("%s has no kid; SMART Backend Services names the key in every assertion", what))
		} else if seen[kid] {
			errs = append(errs, fmt.Errorf("%s: kid is used twice", what))
		}
		seen[kid] = true
		if use, ok := k.KeyUsage(); ok && use != "" && use != string(jwk.ForSignature) {
			errs = append(errs, fmt.Errorf("%s is marked use %q, not sig", what, use))
		}
		if _, err := signingAlgorithms(k); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", what, err))
		}
	}
	return set, errs
}
