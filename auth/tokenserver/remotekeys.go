package tokenserver

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
)

const (
	// remoteKeysTTL is how long a client's fetched JWKS is used before it
	// is fetched again.
	remoteKeysTTL = 5 * time.Minute
	// remoteRefetchInterval is the least time between two fetches caused
	// by an unknown kid, so that assertions with made-up key ids cannot
	// make this server hammer a client's JWKS URL.
	remoteRefetchInterval = 30 * time.Second
	remoteFetchTimeout    = 10 * time.Second
)

// remoteKeys fetches the key sets of clients registered with a jwksUrl
// (SMART Backend Services lets a client publish its keys and rotate them
// there). It fetches on demand rather than through a jwk.Cache: these
// are many small, client-run endpoints, and a stale or missing set only
// matters when that client asks for a token.
type remoteKeys struct {
	http *http.Client
	log  *slog.Logger
	mu   sync.Mutex
	sets map[string]*remoteSet
}

type remoteSet struct {
	mu          sync.Mutex // held across a fetch, so that one request fetches and the others wait
	set         jwk.Set
	fetched     time.Time
	nextRefetch time.Time
}

func newRemoteKeys(log *slog.Logger) *remoteKeys {
	return &remoteKeys{
		http: jwk.WrapHTTPClientDefaults(&http.Client{Timeout: remoteFetchTimeout}),
		log:  log,
		sets: map[string]*remoteSet{},
	}
}

// key returns the key kid of the set at url, or nil when the set has no
// such key. An unknown kid makes it refetch the set, once per
// remoteRefetchInterval.
func (r *remoteKeys) key(ctx context.Context, url, kid string, now time.Time) (jwk.Key, error) {
	r.mu.Lock()
	rs := r.sets[url]
	if rs == nil {
		rs = &remoteSet{}
		r.sets[url] = rs
	}
	r.mu.Unlock()

	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.set == nil || now.Sub(rs.fetched) > remoteKeysTTL {
		if err := r.fetch(ctx, rs, url, now); err != nil && rs.set == nil {
			return nil, err
		}
	}
	if k, ok := rs.set.LookupKeyID(kid); ok {
		return k, nil
	}
	if now.Before(rs.nextRefetch) {
		return nil, nil
	}
	rs.nextRefetch = now.Add(remoteRefetchInterval)
	if err := r.fetch(ctx, rs, url, now); err != nil {
		return nil, err
	}
	k, _ := rs.set.LookupKeyID(kid)
	return k, nil
}

// fetch replaces rs's set with the one at url. On failure the old set,
// if any, stays in use.
func (r *remoteKeys) fetch(ctx context.Context, rs *remoteSet, url string, now time.Time) error {
	set, err := jwk.Fetch(ctx, url, jwk.WithHTTPClient(r.http))
	if err == nil {
		// Only public halves are used, whatever the client publishes.
		set, err = jwk.PublicSetOf(set)
	}
	if err != nil {
		r.log.Warn("fetching a client's JWKS failed", "url", url, "err", err)
		return fmt.Errorf("fetch client JWKS %s: %w", url, err)
	}
	rs.set, rs.fetched = set, now
	return nil
}
