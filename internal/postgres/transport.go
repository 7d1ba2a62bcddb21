package postgres

import (
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
	cfg, err := pgconn.ParseConfig(dbURL)
	if err != nil {
		return nil
	}
	tries := append([]*pgconn.FallbackConfig{{Host: cfg.Host, Port: cfg.Port, TLSConfig: cfg.TLSConfig}}, cfg.Fallbacks...)
	var hosts []string
	for _, t := range tries {
		if t.TLSConfig != nil || strings.HasPrefix(t.Host, "/") {
			continue
		}
		hp := net.JoinHostPort(t.Host, strconv.Itoa(int(t.Port)))
		if !slices.Contains(hosts, hp) {
			hosts = append(hosts, hp)
		}
	}
	return hosts
}
