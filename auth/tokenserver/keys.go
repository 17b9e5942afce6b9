package tokenserver

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
)

// minRSABits is the shortest RSA key accepted (RFC 7518 §3.3).
const minRSABits = 2048

// LoadOrCreateKey returns the token server's private signing key, kept
// at path as a JWK (JSON). When path does not exist it creates an ES384
// (EC P-384) key whose kid is its RFC 7638 thumbprint and writes
// it with mode 0600, creating missing directories with mode 0700. A PEM
// private key (PKCS #8, SEC 1 or PKCS #1; EC P-256/384/521 or RSA of at
// least 2048 bits) is accepted in the file too.
//
// Every api replica must sign with the same key, or a token issued by
// one replica fails on another whose JWKS does not list it: with several
// replicas, put the file on a shared volume or in a secret mounted by
// all of them, created once beforehand. Creation is atomic (a replica
// that loses the race reads the winner's key), but replicas without a
// shared file would each create their own.
func LoadOrCreateKey(path string) (jwk.Key, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return createKey(path)
	}
	if err != nil {
		return nil, fmt.Errorf("load signing key: %w", err)
	}
	k, err := parseKey(data)
	if err != nil {
		return nil, fmt.Errorf("load signing key %s: %w", path, err)
	}
	return k, nil
}

// parseKey reads a private key from JWK JSON or PEM, and gives it a kid
// (its thumbprint) and alg when it has none.
func parseKey(data []byte) (jwk.Key, error) {
	var (
		k   jwk.Key
		err error
	)
	if bytes.HasPrefix(bytes.TrimSpace(data), []byte("-----BEGIN")) {
		k, err = jwk.ParseKey(data, jwk.WithPEM(true))
	} else {
		k, err = jwk.ParseKey(data)
	}
	if err != nil {
		return nil, fmt.Errorf("neither a JWK nor a PEM private key: %w", err)
	}
	if private, err := jwk.IsPrivateKey(k); err != nil || !private {
		return nil, errors.New("not a private key (an EC or RSA private key is needed to sign tokens)")
	}
	alg, err := signingAlgorithm(k)
	if err != nil {
		return nil, err
	}
	if _, ok := k.Algorithm(); !ok {
		if err := k.Set(jwk.AlgorithmKey, alg); err != nil {
			return nil, fmt.Errorf("set alg: %w", err)
		}
	}
	if err := jwk.AssignKeyID(k); err != nil {
		return nil, fmt.Errorf("assign kid: %w", err)
	}
	return k, nil
}

// createKey makes a new ES384 key and stores it at path, unless another
// process got there first.
func createKey(path string) (jwk.Key, error) {
	raw, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("create signing key: %w", err)
	}
	k, err := jwk.Import(raw)
	if err != nil {
		return nil, fmt.Errorf("create signing key: %w", err)
	}
	for name, v := range map[string]any{jwk.AlgorithmKey: jwa.ES384(), jwk.KeyUsageKey: jwk.ForSignature} {
		if err := k.Set(name, v); err != nil {
			return nil, fmt.Errorf("create signing key: set %s: %w", name, err)
		}
	}
	if err := jwk.AssignKeyID(k); err != nil {
		return nil, fmt.Errorf("create signing key: %w", err)
	}
	data, err := json.MarshalIndent(k, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("create signing key: %w", err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create signing key: %w", err)
	}
	// Write a temporary file and link it into place: the key appears
	// whole or not at all, and a replica that lost the race to create
	// it gets EEXIST and reads the winner's key.
	tmp, err := os.CreateTemp(dir, ".signing-key-*")
	if err != nil {
		return nil, fmt.Errorf("create signing key: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("create signing key: %w", err)
	}
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("create signing key: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("create signing key: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("create signing key: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return LoadOrCreateKey(path)
		}
		return nil, fmt.Errorf("create signing key: %w", err)
	}
	return k, nil
}

// signingAlgorithm is the algorithm a private key signs with: its own
// alg when it names one, else ES256/ES384/ES512 by curve, or RS384 for
// RSA (the RSA algorithm SMART Backend Services requires servers to
// support).
func signingAlgorithm(k jwk.Key) (jwa.SignatureAlgorithm, error) {
	algs, err := signingAlgorithms(k)
	if err != nil {
		return jwa.EmptySignatureAlgorithm(), err
	}
	if ka, ok := k.Algorithm(); ok {
		for _, a := range algs {
			if a.String() == ka.String() {
				return a, nil
			}
		}
		return jwa.EmptySignatureAlgorithm(), fmt.Errorf("the key's alg %s is not an accepted algorithm for its key type", ka)
	}
	if k.KeyType() == jwa.RSA() {
		return jwa.RS384(), nil
	}
	return algs[0], nil
}

// signingAlgorithms are the accepted algorithms a key can verify:
// RS*/PS* for RSA keys of at least 2048 bits, the one ES* of an EC key's
// curve.
func signingAlgorithms(k jwk.Key) ([]jwa.SignatureAlgorithm, error) {
	raw, err := jwk.PublicRawKeyOf(k)
	if err != nil {
		return nil, fmt.Errorf("unusable key: %w", err)
	}
	switch pub := raw.(type) {
	case *rsa.PublicKey:
		if pub.N.BitLen() < minRSABits {
			return nil, fmt.Errorf("the RSA key has %d bits; at least %d are needed", pub.N.BitLen(), minRSABits)
		}
		return []jwa.SignatureAlgorithm{jwa.RS256(), jwa.RS384(), jwa.RS512(), jwa.PS256(), jwa.PS384(), jwa.PS512()}, nil
	case *ecdsa.PublicKey:
		switch pub.Curve {
		case elliptic.P256():
			return []jwa.SignatureAlgorithm{jwa.ES256()}, nil
		case elliptic.P384():
			return []jwa.SignatureAlgorithm{jwa.ES384()}, nil
		case elliptic.P521():
			return []jwa.SignatureAlgorithm{jwa.ES512()}, nil
		}
		return nil, errors.New("the EC key's curve is not P-256, P-384 or P-521")
	}
	return nil, fmt.Errorf("key type %s is not accepted; use an EC (P-256/384/521) or RSA key", k.KeyType())
}

// fits returns k's raw public key when it may verify a signature made
// with alg: a signing key of the right type and curve whose own alg, if
// any, is alg.
func fits(k jwk.Key, alg jwa.SignatureAlgorithm) (any, bool) {
	if use, ok := k.KeyUsage(); ok && use != "" && use != string(jwk.ForSignature) {
		return nil, false
	}
	if ka, ok := k.Algorithm(); ok && ka.String() != alg.String() {
		return nil, false
	}
	algs, err := signingAlgorithms(k)
	if err != nil {
		return nil, false
	}
	for _, a := range algs {
		if a == alg {
			raw, err := jwk.PublicRawKeyOf(k)
			return raw, err == nil
		}
	}
	return nil, false
}

// thumbprint is RFC 7638's key id, for keys handed to ClientAssertion
// without one.
func thumbprint(k jwk.Key) (jwk.Key, error) {
	if _, ok := k.KeyID(); ok {
		return k, nil
	}
	c, err := k.Clone()
	if err != nil {
		return nil, err
	}
	if err := jwk.AssignKeyID(c, jwk.WithThumbprintHash(crypto.SHA256)); err != nil {
		return nil, err
	}
	return c, nil
}
