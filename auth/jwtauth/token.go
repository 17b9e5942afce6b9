package jwtauth

import (
	"crypto/rsa"
	"strings"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
)

// algorithms are the signature algorithms accepted (RFC 7518 §3.1), each
// with the key type and, for ECDSA, the curve it needs. Keyed by the
// "alg" header value.
var algorithms = map[string]struct {
	alg   jwa.SignatureAlgorithm
	curve string // "" for RSA
}{
	"RS256": {jwa.RS256(), ""}, "RS384": {jwa.RS384(), ""}, "RS512": {jwa.RS512(), ""},
	"PS256": {jwa.PS256(), ""}, "PS384": {jwa.PS384(), ""}, "PS512": {jwa.PS512(), ""},
	"ES256": {jwa.ES256(), "P-256"}, "ES384": {jwa.ES384(), "P-384"}, "ES512": {jwa.ES512(), "P-521"},
}

// minRSABits refuses RSA keys too short to trust (RFC 7518 §3.3 asks
// for 2048 bits at least).
const minRSABits = 2048

// token is a parsed, not yet verified, compact JWS.
type token struct {
	raw []byte
	alg string
	kid string
}

// parseToken checks raw's shape and header: a compact JWS with an
// accepted asymmetric algorithm and no critical extensions.
func parseToken(raw string) (*token, *Error) {
	switch {
	case raw == "":
		return nil, invalidToken("the token is empty")
	case len(raw) > maxTokenLength:
		return nil, invalidToken("the token is longer than %d bytes", maxTokenLength)
	}
	switch strings.Count(raw, ".") {
	case 2:
	case 4:
		return nil, invalidToken("the token is encrypted (JWE); only signed JWTs are accepted")
	default:
		return nil, invalidToken("the token is not a JWT in compact serialization")
	}
	msg, err := jws.Parse([]byte(raw), jws.WithCompact())
	if err != nil || len(msg.Signatures()) != 1 {
		return nil, invalidToken("the token is not a well-formed signed JWT")
	}
	hdr := msg.Signatures()[0].ProtectedHeaders()
	alg, ok := hdr.Algorithm()
	if !ok {
		return nil, invalidToken("the token's header names no algorithm")
	}
	name := alg.String()
	switch {
	case name == jwa.NoSignature().String():
		return nil, invalidToken("the token is unsigned (alg none)")
	case strings.HasPrefix(name, "HS"):
		return nil, invalidToken("the token is signed with the symmetric algorithm %s; only RS*, PS* and ES* signatures are accepted", name)
	}
	if _, ok := algorithms[name]; !ok {
		return nil, invalidToken("the token's algorithm %s is not accepted; only RS*, PS* and ES* signatures are", printable(name))
	}
	if _, ok := hdr.Critical(); ok {
		return nil, invalidToken("the token has critical header parameters (crit), which this server does not support")
	}
	kid, _ := hdr.KeyID()
	return &token{raw: []byte(raw), alg: name, kid: kid}, nil
}

// verify checks the signature with the key of set that the token names
// (or, when it names none, with each key that fits the algorithm) and
// returns the payload.
func (t *token) verify(set jwk.Set) ([]byte, *Error) {
	var candidates []jwk.Key
	if t.kid != "" {
		for i := range set.Len() {
			if k, _ := set.Key(i); keyID(k) == t.kid {
				candidates = append(candidates, k)
			}
		}
		if len(candidates) == 0 {
			return nil, invalidToken("the token's signing key (kid %s) is not among the issuer's keys", printable(t.kid))
		}
	} else {
		for i := range set.Len() {
			k, _ := set.Key(i)
			candidates = append(candidates, k)
		}
	}
	a := algorithms[t.alg]
	fitting := 0
	for _, k := range candidates {
		pub, ok := fits(k, t.alg)
		if !ok {
			continue
		}
		fitting++
		if payload, err := jws.VerifyCompactFast(pub, t.raw, a.alg); err == nil {
			return payload, nil
		}
	}
	if fitting == 0 {
		return nil, invalidToken("none of the issuer's keys can verify a %s signature", t.alg)
	}
	return nil, invalidToken("the signature does not verify")
}

func keyID(k jwk.Key) string {
	kid, _ := k.KeyID()
	return kid
}

// fits returns k's raw public key when k may verify signatures made with
// alg: a signing key (use "sig" or none), of alg's key type and curve,
// whose own "alg", if any, is alg, and an RSA key of at least 2048 bits.
func fits(k jwk.Key, alg string) (any, bool) {
	if use, ok := k.KeyUsage(); ok && use != "" && use != string(jwk.ForSignature) {
		return nil, false
	}
	if ka, ok := k.Algorithm(); ok && ka.String() != alg {
		return nil, false
	}
	raw, err := jwk.PublicRawKeyOf(k)
	if err != nil {
		return nil, false
	}
	want := algorithms[alg].curve
	switch pub := raw.(type) {
	case *rsa.PublicKey:
		return pub, want == "" && pub.N.BitLen() >= minRSABits
	default:
		ec, ok := k.(interface {
			Crv() (jwa.EllipticCurveAlgorithm, bool)
		})
		if !ok || want == "" || k.KeyType() != jwa.EC() {
			return nil, false
		}
		crv, ok := ec.Crv()
		return raw, ok && crv.String() == want
	}
}

// printable shortens s and drops what is not printable ASCII, for values
// taken from a token into an error description.
func printable(s string) string {
	const limit = 64
	s = strings.Map(func(r rune) rune {
		if r >= 0x20 && r <= 0x7e {
			return r
		}
		return -1
	}, s)
	if len(s) > limit {
		s = s[:limit] + "..."
	}
	return s
}
