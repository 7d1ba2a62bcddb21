package main

import (
	"errors"
	"net/url"

	"github.com/phonesd/phonesd/internal/testkit/faultproxy"
)

// proxied returns rawURL with its host replaced by a fault proxy's address,
// and the proxy, so that a scenario can cut or blackhole the link without
// touching the server behind it.
func proxied(rawURL string) (string, *faultproxy.Proxy, error) {
	return proxiedBy(rawURL, faultproxy.Start)
}

// proxiedPostgres is proxied for a PostgreSQL URL, through a proxy that
// follows PostgreSQL's messages. With plain, the URL asks for an
// unencrypted link (sslmode=disable, on loopback), which the proxy needs
// to lose COMMIT replies.
func proxiedPostgres(rawURL string, plain bool) (string, *faultproxy.Proxy, error) {
	proxyURL, p, err := proxiedBy(rawURL, faultproxy.StartPostgres)
	if err != nil || !plain {
		return proxyURL, p, err
	}
	u, _ := url.Parse(proxyURL)
	q := u.Query()
	q.Set("sslmode", "disable")
	u.RawQuery = q.Encode()
	return u.String(), p, nil
}

func proxiedBy(rawURL string, start func(target string) (*faultproxy.Proxy, error)) (string, *faultproxy.Proxy, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		// The URL is not quoted: it may hold a password.
		return "", nil, errors.New("not a URL with a host")
	}
	p, err := start(u.Host)
	if err != nil {
		return "", nil, err
	}
	u.Host = p.Addr()
	return u.String(), p, nil
}
