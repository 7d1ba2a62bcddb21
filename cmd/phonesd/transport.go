package main

import (
	"fmt"
	"log/slog"
	neturl "net/url"
	"strings"

	"github.com/phonesd/phonesd/internal/postgres"
)

// checkTransport keeps credentials and phone numbers from crossing the
// network in clear text: a PostgreSQL host that is neither loopback nor a
// Unix socket must be reached with sslmode require, verify-ca or
// verify-full, and a NATS server that is not loopback, with credentials or
// without (the events carry phone numbers), must be reached over TLS:
// tls://, or a server that offers TLS, which the connection then requires
// (one that offers none is refused). PHONES_ALLOW_INSECURE_TRANSPORT
// lifts both, for networks whose encryption is outside the process, such
// as a service mesh. It also notes the PostgreSQL hosts whose certificate
// sslmode=require leaves unchecked, for a warning at start.
func (c *config) checkTransport() error {
	if c.postgresURL != "" {
		for _, host := range postgres.UnverifiedHosts(c.postgresURL) {
			if !loopback(host) {
				c.unverifiedDBHosts = append(c.unverifiedDBHosts, host)
			}
		}
	}
	if c.allowInsecure {
		return nil
	}
	if c.postgresURL != "" {
		for _, host := range postgres.PlaintextHosts(c.postgresURL) {
			if !loopback(host) {
				return fmt.Errorf("PHONES_DATABASE_URL: %s is not a loopback host, and sslmode lets the connection go unencrypted: set sslmode=require, verify-ca or verify-full, or PHONES_ALLOW_INSECURE_TRANSPORT=true where the network encrypts it", host)
			}
		}
	}
	if c.nats.url != "" {
		c.nats.requireTLS = natsLeavesHost(c.nats.url)
	}
	return nil
}

// natsLeavesHost reports whether url, one NATS URL or several separated by
// commas, names a server that is not loopback.
func natsLeavesHost(url string) bool {
	for part := range strings.SplitSeq(url, ",") {
		u, err := neturl.Parse(strings.TrimSpace(part))
		if err == nil && !loopbackHost(u.Hostname()) {
			return true
		}
	}
	return false
}

// warnTransport logs, at start, what the transport rules allow but an
// operator should know: PostgreSQL hosts reached with sslmode=require,
// which encrypts but takes any certificate, so that whoever can redirect
// the connection gets the database password.
func (c config) warnTransport(log *slog.Logger) {
	if len(c.unverifiedDBHosts) > 0 {
		log.Warn("PHONES_DATABASE_URL: the connection is encrypted but the server's certificate is not checked (sslmode=require), so whoever intercepts it gets the password and the phone numbers: set sslmode=verify-full, with sslrootcert",
			"hosts", strings.Join(c.unverifiedDBHosts, ","))
	}
}
