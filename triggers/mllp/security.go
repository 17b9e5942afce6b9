package mllp

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// ParseAllowList parses a comma-separated list of IP addresses and CIDR
// prefixes, such as "10.20.0.0/16, 192.0.2.7, 2001:db8::/32", into
// Config.AllowedSenders. A bare address stands for itself alone (/32 or
// /128); IPv4-mapped IPv6 forms are turned into IPv4 so that they match
// however the kernel reports a sender. A prefix with bits set beyond its
// length (10.1.2.3/16) is refused rather than silently widened, since on
// an allow-list that is more likely a typo than intent. An empty or blank
// s yields nil, which accepts any sender. Every bad entry is reported.
func ParseAllowList(s string) ([]netip.Prefix, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []netip.Prefix
	var errs []error
	for i, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		p, err := parseAllowEntry(item)
		if err != nil {
			errs = append(errs, fmt.Errorf("entry %d %q: %w", i+1, item, err))
			continue
		}
		out = append(out, p)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("mllp: allowed senders: %w", err)
	}
	return out, nil
}

func parseAllowEntry(item string) (netip.Prefix, error) {
	if item == "" {
		return netip.Prefix{}, errors.New("empty; want an IP address or a CIDR prefix")
	}
	if !strings.Contains(item, "/") {
		a, err := netip.ParseAddr(item)
		if err != nil {
			return netip.Prefix{}, errors.New("not an IP address or CIDR prefix")
		}
		if a.Zone() != "" {
			return netip.Prefix{}, errors.New("IPv6 zones are not supported")
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(item)
	if err != nil {
		return netip.Prefix{}, errors.New("not a valid CIDR prefix")
	}
	if p.Addr().Is4In6() && p.Bits() < 96 {
		return netip.Prefix{}, errors.New("IPv4-mapped prefix shorter than /96 covers more than IPv4 addresses")
	}
	if m := p.Masked(); m.Addr() != p.Addr() {
		return netip.Prefix{}, fmt.Errorf("has bits set beyond /%d; did you mean %s?", p.Bits(), normalizePrefix(m))
	}
	return normalizePrefix(p), nil
}

// normalizePrefix turns an IPv4-mapped IPv6 prefix into its IPv4 form, the
// form Server.allowed compares senders in, and masks it.
func normalizePrefix(p netip.Prefix) netip.Prefix {
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked()
}
