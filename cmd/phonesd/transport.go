package main

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/phonesd/phonesd/internal/postgres"
)

// checkTransport keeps credentials and phone numbers from crossing the
// network in clear text: a PostgreSQL host that is neither loopback nor a
// Unix socket must be reached with sslmode require, verify-ca or
// verify-full, and a NATS URL with credentials to a host that is not
// loopback must be tls:// or lead to a server that offers TLS (the
// connection then refuses one that does not). PHONES_ALLOW_INSECURE_TRANSPORT
// lifts both, for networks whose encryption is outside the process, such
// as a service mesh.
func (c *config) checkTransport() error {
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
		c.nats.requireTLS = natsCredentialsLeaveHost(c.nats)
	}
	return nil
}

// natsCredentialsLeaveHost reports whether n sends credentials (in the URL
// or a credentials file) over a nats:// URL to a host that is not loopback.
func natsCredentialsLeaveHost(n natsConfig) bool {
	for part := range strings.SplitSeq(n.url, ",") {
		u, err := url.Parse(strings.TrimSpace(part))
		if err != nil || u.Scheme != "nats" || loopbackHost(u.Hostname()) {
			continue
		}
		if u.User != nil || n.credsFile != "" {
			return true
		}
	}
	return false
}
