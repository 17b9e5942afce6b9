// Package resthook delivers subscription notifications over the rest-hook
// channel (FHIR R4 subscription.html#2.46.7.1): an HTTP POST to the
// subscriber's endpoint, with the handshake that activates a subscription,
// custom headers and a timeout, to endpoints an allow-list admits and never,
// unless listed, to private, loopback or link-local addresses.
package resthook

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"syscall"

	"github.com/priorflow/priorflow/fhir"
)

// Guard admits endpoints whose URL starts with an allow-list entry
// (PRIORFLOW_SUBSCRIPTION_ENDPOINTS): same scheme, host and port, and a path
// under the entry's path. An endpoint must also not resolve to a private,
// loopback, link-local, unspecified or multicast address, unless its entry
// names that address as an IP literal (e.g. http://10.1.2.3:8080/hooks/):
// a host name could be re-pointed at an internal address, an IP literal
// cannot. The check is repeated at dial time on the address actually
// dialled, so DNS rebinding between check and send is caught too.
type Guard struct {
	allow    []entry
	resolver *net.Resolver
}

type entry struct {
	u         *url.URL
	privateOK bool
}

// ParseAllowList splits a comma-separated list of URL prefixes.
func ParseAllowList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// NewGuard returns a guard for the given prefixes; each must be an absolute
// http or https URL.
func NewGuard(prefixes []string) (*Guard, error) {
	g := &Guard{resolver: net.DefaultResolver}
	for _, p := range prefixes {
		u, err := url.Parse(p)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" {
			return nil, fmt.Errorf("subscription endpoint allow-list: %q is not an absolute http(s) URL prefix", p)
		}
		e := entry{u: u}
		if ip, err := netip.ParseAddr(strings.Trim(u.Hostname(), "[]")); err == nil && Private(ip) {
			e.privateOK = true
		}
		g.allow = append(g.allow, e)
	}
	return g, nil
}

// match returns the entry admitting endpoint, or nil.
func (g *Guard) match(endpoint string) *entry {
	u, err := url.Parse(endpoint)
	if err != nil || u.User != nil {
		return nil
	}
	for i := range g.allow {
		e := &g.allow[i]
		if !strings.EqualFold(u.Scheme, e.u.Scheme) || !strings.EqualFold(u.Host, e.u.Host) {
			continue
		}
		if strings.HasPrefix(u.EscapedPath(), e.u.EscapedPath()) {
			return e
		}
	}
	return nil
}

// Check admits endpoint or returns a fhir.KindUnprocessable error (422 at
// the REST API) saying why not.
func (g *Guard) Check(ctx context.Context, endpoint string) error {
	e := g.match(endpoint)
	if e == nil {
		return fhir.Errorf(fhir.KindUnprocessable, "channel.endpoint is not in this server's allow-list of subscription endpoints (PRIORFLOW_SUBSCRIPTION_ENDPOINTS)").At("Subscription.channel.endpoint")
	}
	if e.privateOK {
		return nil
	}
	u, _ := url.Parse(endpoint)
	host := u.Hostname()
	var addrs []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{ip}
	} else {
		addrs, err = g.resolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			return fhir.Errorf(fhir.KindUnprocessable, "channel.endpoint host %s does not resolve", host).At("Subscription.channel.endpoint")
		}
	}
	for _, a := range addrs {
		if Private(a) {
			return fhir.Errorf(fhir.KindUnprocessable, "channel.endpoint resolves to a private or loopback address, which is refused unless listed in PRIORFLOW_SUBSCRIPTION_ENDPOINTS").At("Subscription.channel.endpoint")
		}
	}
	return nil
}

// Private reports whether ip is loopback, private (RFC 1918, RFC 4193),
// shared (RFC 6598), link-local, unspecified or multicast.
func Private(ip netip.Addr) bool {
	ip = ip.Unmap()
	return ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsInterfaceLocalMulticast() || ip.IsMulticast() || ip.IsUnspecified() ||
		netip.MustParsePrefix("100.64.0.0/10").Contains(ip)
}

type allowPrivateKey struct{}

// dialControl refuses private addresses at connect time unless the
// request's context allows them (its endpoint's entry is an IP literal).
func dialControl(ctx context.Context) func(network, address string, c syscall.RawConn) error {
	allow, _ := ctx.Value(allowPrivateKey{}).(bool)
	return func(network, address string, _ syscall.RawConn) error {
		if allow {
			return nil
		}
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return fmt.Errorf("refusing to dial %s: %w", address, err)
		}
		if Private(ap.Addr()) {
			return fmt.Errorf("refusing to dial private address %s", ap.Addr())
		}
		return nil
	}
}
