package tokenserver

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"
)

const (
	maxAssertionLength = 16 << 10
	maxJTILength       = 256
)

// acceptedAlgorithms are the assertion signature algorithms: SMART asks
// for RS384 and ES384; the other asymmetric ones cost nothing. HS* and
// none are refused — the server holds no client secrets.
var acceptedAlgorithms = map[string]jwa.SignatureAlgorithm{
	"RS256": jwa.RS256(), "RS384": jwa.RS384(), "RS512": jwa.RS512(),
	"PS256": jwa.PS256(), "PS384": jwa.PS384(), "PS512": jwa.PS512(),
	"ES256": jwa.ES256(), "ES384": jwa.ES384(), "ES512": jwa.ES512(),
}

// assertion is a client assertion that passed every check but replay.
type assertion struct {
	client  *Client
	jti     string
	expires time.Time // exp plus clock skew: until then the jti must be remembered
}

// checkAssertion authenticates a client by its assertion (RFC 7523 §3,
// SMART Backend Services "Signature verification"). Every failure is
// invalid_client (RFC 7521 §4.2.1).
func (s *Server) checkAssertion(ctx context.Context, raw string) (*assertion, *oauthError) {
	if len(raw) > maxAssertionLength {
		return nil, invalidClient("the client assertion is longer than %d bytes", maxAssertionLength)
	}
	if strings.Count(raw, ".") != 2 {
		return nil, invalidClient("the client assertion is not a signed JWT in compact serialization")
	}
	msg, err := jws.Parse([]byte(raw), jws.WithCompact())
	if err != nil || len(msg.Signatures()) != 1 {
		return nil, invalidClient("the client assertion is not a well-formed signed JWT")
	}
	hdr := msg.Signatures()[0].ProtectedHeaders()
	algHdr, _ := hdr.Algorithm()
	alg, ok := acceptedAlgorithms[algHdr.String()]
	switch {
	case algHdr.String() == jwa.NoSignature().String():
		return nil, invalidClient("the client assertion is unsigned (alg none)")
	case strings.HasPrefix(algHdr.String(), "HS"):
		return nil, invalidClient("the client assertion is signed with the symmetric algorithm %s; sign it with the client's private key (RS384 or ES384)", algHdr)
	case !ok:
		return nil, invalidClient("the client assertion's algorithm %s is not accepted; use RS384 or ES384", printable(algHdr.String()))
	}
	if _, ok := hdr.Critical(); ok {
		return nil, invalidClient("the client assertion has critical header parameters (crit), which this server does not support")
	}
	kid, _ := hdr.KeyID()
	if kid == "" {
		return nil, invalidClient("the client assertion's header names no key (kid)")
	}

	// The signature can be checked only with the client's keys, so the
	// issuer is read before it is verified; nothing else is trusted yet.
	// The payload must be the claims themselves: jwt.ParseInsecure would
	// also unwrap a nested JWS and return its claims instead.
	payload := bytes.TrimSpace(msg.Payload())
	if len(payload) == 0 || payload[0] != '{' {
		return nil, invalidClient("the client assertion's claims are not a JSON object")
	}
	tok, err := jwt.ParseInsecure(payload)
	if err != nil {
		return nil, invalidClient("the client assertion's claims are malformed")
	}
	iss, _ := tok.Issuer()
	sub, _ := tok.Subject()
	switch {
	case iss == "":
		return nil, invalidClient("the client assertion has no iss: it must be the client id")
	case iss != sub:
		return nil, invalidClient("the client assertion's iss and sub differ: both must be the client id")
	}
	client, ok := s.cfg.Clients.Lookup(iss)
	if !ok {
		return nil, invalidClient("client %s is not registered", printable(iss))
	}
	if jku, ok := hdr.JWKSetURL(); ok && jku != client.JWKSURL {
		// SMART: a jku must be the JWKS URL the client registered. The
		// server never fetches keys from a URL the assertion names.
		return nil, invalidClient("the client assertion's jku is not the JWKS URL registered for client %s", client.ID)
	}
	key, e := s.clientKey(ctx, client, kid)
	if e != nil {
		return nil, e
	}
	pub, ok := fits(key, alg)
	if !ok {
		return nil, invalidClient("client %s's key %s cannot verify a %s signature", client.ID, printable(kid), alg)
	}
	if _, err := jws.VerifyCompactFast(pub, []byte(raw), alg); err != nil {
		return nil, invalidClient("the client assertion's signature does not verify with client %s's key %s", client.ID, printable(kid))
	}

	// Signed by the client: now its claims count.
	aud, _ := tok.Audience()
	if !slices.Contains(aud, s.cfg.TokenURL) {
		return nil, invalidClient("the client assertion's aud must be the token endpoint, %s", s.cfg.TokenURL)
	}
	now := s.now()
	exp, ok := tok.Expiration()
	switch {
	case !ok:
		return nil, invalidClient("the client assertion has no exp")
	case !now.Before(exp.Add(clockSkew)):
		return nil, invalidClient("the client assertion expired at %s", stamp(exp))
	case exp.After(now.Add(maxAssertionLifetime + clockSkew)):
		return nil, invalidClient("the client assertion expires at %s, more than %s ahead", stamp(exp), maxAssertionLifetime)
	}
	if nbf, ok := tok.NotBefore(); ok && now.Add(clockSkew).Before(nbf) {
		return nil, invalidClient("the client assertion is not valid before %s", stamp(nbf))
	}
	if iat, ok := tok.IssuedAt(); ok && now.Add(clockSkew).Before(iat) {
		return nil, invalidClient("the client assertion was issued in the future (iat %s)", stamp(iat))
	}
	jti, _ := tok.JwtID()
	switch {
	case jti == "":
		return nil, invalidClient("the client assertion has no jti")
	case len(jti) > maxJTILength:
		return nil, invalidClient("the client assertion's jti is longer than %d characters", maxJTILength)
	}
	return &assertion{client: client, jti: jti, expires: exp.Add(clockSkew)}, nil
}

// clientKey returns the client's key kid, from the file or its JWKS URL.
func (s *Server) clientKey(ctx context.Context, client *Client, kid string) (jwk.Key, *oauthError) {
	if client.JWKSURL == "" {
		if k, ok := client.keys.LookupKeyID(kid); ok {
			return k, nil
		}
		return nil, invalidClient("client %s has no registered key %s", client.ID, printable(kid))
	}
	k, err := s.remote.key(ctx, client.JWKSURL, kid, s.now())
	if err != nil {
		return nil, invalidClient("client %s's JWKS URL cannot be fetched right now", client.ID)
	}
	if k == nil {
		return nil, invalidClient("client %s's JWKS has no key %s", client.ID, printable(kid))
	}
	return k, nil
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }
