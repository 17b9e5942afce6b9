package jwtauth

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"time"
)

// claims are the token claims Priorflow reads. They are decoded by exact
// name (encoding/json would also match "ISS" or "Scope").
type claims struct {
	issuer, subject, id         string
	audience                    []string
	expiry, notBefore, issuedAt *time.Time
	scope                       *string
	clientID, azp               string
	patient, fhirUser           string
	purposeOfUse                []string
}

func (c *claims) hasAudience(aud string) bool {
	for _, a := range c.audience {
		if a == aud {
			return true
		}
	}
	return false
}

// decodeClaims decodes a verified payload. A claim of the wrong type
// makes the token invalid: the issuer is not speaking SMART.
func decodeClaims(payload []byte) (*claims, *Error) {
	var m map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(payload))
	if err := dec.Decode(&m); err != nil || m == nil || dec.More() {
		return nil, invalidToken("the token's claims are not a JSON object")
	}
	c := &claims{}
	strs := []struct {
		name string
		dst  *string
	}{
		{"iss", &c.issuer}, {"sub", &c.subject}, {"jti", &c.id},
		{"client_id", &c.clientID}, {"azp", &c.azp},
		{"patient", &c.patient}, {"fhirUser", &c.fhirUser},
	}
	for _, s := range strs {
		if v, ok := m[s.name]; ok && !isNull(v) {
			if err := json.Unmarshal(v, s.dst); err != nil {
				return nil, wrongType(s.name, "a string")
			}
		}
	}
	if v, ok := m["scope"]; ok && !isNull(v) {
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return nil, wrongType("scope", "a space-separated string")
		}
		c.scope = &s
	}
	var ok bool
	if c.audience, ok = stringOrList(m["aud"]); !ok {
		return nil, wrongType("aud", "a string or an array of strings")
	}
	if c.purposeOfUse, ok = stringOrList(m["purpose_of_use"]); !ok {
		return nil, wrongType("purpose_of_use", "a code or an array of codes")
	}
	dates := []struct {
		name string
		dst  **time.Time
	}{{"exp", &c.expiry}, {"nbf", &c.notBefore}, {"iat", &c.issuedAt}}
	for _, d := range dates {
		if v, ok := m[d.name]; ok && !isNull(v) {
			t, ok := numericDate(v)
			if !ok {
				return nil, wrongType(d.name, "a NumericDate (seconds since 1970)")
			}
			*d.dst = &t
		}
	}
	return c, nil
}

func wrongType(claim, want string) *Error {
	return invalidToken("the token's %s claim is not %s", claim, want)
}

func isNull(v json.RawMessage) bool { return string(bytes.TrimSpace(v)) == "null" }

// stringOrList decodes a claim that is one string or an array of them
// (aud per RFC 7519 §4.1.3; purpose_of_use likewise). Absent is empty.
func stringOrList(v json.RawMessage) ([]string, bool) {
	if v == nil || isNull(v) {
		return nil, true
	}
	var one string
	if err := json.Unmarshal(v, &one); err == nil {
		return []string{one}, true
	}
	var list []string
	if err := json.Unmarshal(v, &list); err != nil {
		return nil, false
	}
	for _, s := range list {
		if s == "" {
			return nil, false
		}
	}
	return list, true
}

// numericDate decodes RFC 7519 §2 NumericDate: seconds since the epoch,
// possibly with a fraction.
func numericDate(v json.RawMessage) (time.Time, bool) {
	v = bytes.TrimSpace(v)
	var n json.Number
	// json.Number would also take a quoted number; RFC 7519 wants a JSON number.
	if len(v) == 0 || v[0] == '"' {
		return time.Time{}, false
	}
	if err := json.Unmarshal(v, &n); err != nil {
		return time.Time{}, false
	}
	f, err := strconv.ParseFloat(string(n), 64)
	// Beyond year 9999 is a broken issuer, and would overflow time.Time's
	// arithmetic.
	if err != nil || math.IsNaN(f) || f < 0 || f > 253402300799 {
		return time.Time{}, false
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC(), true
}
