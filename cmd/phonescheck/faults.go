package main

import (
	"errors"
	"net/url"

	"phonesd/internal/faultproxy"
)

// proxied returns rawURL with its host replaced by a fault proxy's address,
// and the proxy, so that a scenario can cut or blackhole the link without
// touching the server behind it.
func proxied(rawURL string) (string, *faultproxy.Proxy, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		// The URL is not quoted: it may hold a password.
		return "", nil, errors.New("not a URL with a host")
	}
	p, err := faultproxy.Start(u.Host)
	if err != nil {
		return "", nil, err
	}
	u.Host = p.Addr()
	return u.String(), p, nil
}
