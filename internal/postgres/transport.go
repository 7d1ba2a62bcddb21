package postgres

import (
	"crypto/tls"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// PlaintextHosts returns, as host:port, each TCP host of dbURL that a
// connection may reach without TLS: all of them unless sslmode is require,
// verify-ca or verify-full (prefer and allow fall back to plain text, and
// the default is prefer). Unix sockets are left out. It returns nil for a
// URL pgx cannot parse, which Open reports without showing it.
func PlaintextHosts(dbURL string) []string {
	return tcpHosts(dbURL, func(tc *tls.Config) bool { return tc == nil })
}

// UnverifiedHosts returns, as host:port, each TCP host of dbURL reached
// over TLS that checks no certificate: sslmode=require without
// sslrootcert. Such a connection is encrypted, but to whoever answers.
// It returns nil for a URL pgx cannot parse.
func UnverifiedHosts(dbURL string) []string {
	return tcpHosts(dbURL, func(tc *tls.Config) bool {
		// verify-ca checks the chain itself, verify-full lets crypto/tls.
		return tc != nil && tc.InsecureSkipVerify && tc.VerifyPeerCertificate == nil
	})
}

// tcpHosts returns, as host:port without repeats, each TCP host of dbURL
// whose TLS configuration (nil for none) pick chooses.
func tcpHosts(dbURL string, pick func(*tls.Config) bool) []string {
	cfg, err := pgconn.ParseConfig(dbURL)
	if err != nil {
		return nil
	}
	tries := append([]*pgconn.FallbackConfig{{Host: cfg.Host, Port: cfg.Port, TLSConfig: cfg.TLSConfig}}, cfg.Fallbacks...)
	var hosts []string
	for _, t := range tries {
		if strings.HasPrefix(t.Host, "/") || !pick(t.TLSConfig) {
			continue
		}
		hp := net.JoinHostPort(t.Host, strconv.Itoa(int(t.Port)))
		if !slices.Contains(hosts, hp) {
			hosts = append(hosts, hp)
		}
	}
	return hosts
}
