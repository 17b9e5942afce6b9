package search

import (
	"net/http"
	"time"
)

// SetOAuthClock replaces the clock of the OAuth token source behind c, a
// client from NewHTTPClient, so that tests can move past a token's expiry
// without waiting. Call it before the first request.
func SetOAuthClock(c *http.Client, now func() time.Time) {
	c.Transport.(*sameOrigin).with.(*oauthTransport).tokens.now = now
}
