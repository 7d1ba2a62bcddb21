package main

import (
	"strings"
	"testing"
)

func TestTransportSecurity(t *testing.T) {
	production := map[string]string{
		"PHONES_JWKS_URL": "https://keys.example/jwks", "PHONES_JWT_ISSUER": "i", "PHONES_JWT_AUDIENCE": "a",
	}
	for _, c := range []struct {
		name string
		env  map[string]string
		// err is the start of the error; empty: none.
		err string
		// requireTLS is whether the NATS connection must refuse a server
		// without TLS.
		requireTLS bool
	}{
		{"PostgreSQL on loopback in clear text", map[string]string{"PHONES_DATABASE_URL": "postgres://u:pw@127.0.0.1:5432/db?sslmode=disable"}, "", false},
		{"PostgreSQL on localhost, default sslmode", map[string]string{"PHONES_DATABASE_URL": "postgres://u@localhost/db"}, "", false},
		{"PostgreSQL on a Unix socket", map[string]string{"PHONES_DATABASE_URL": "postgres://u@/db?host=/var/run/postgresql"}, "", false},
		{"PostgreSQL elsewhere with sslmode=require", map[string]string{"PHONES_DATABASE_URL": "postgres://u:pw@db.example/db?sslmode=require"}, "", false},
		{"PostgreSQL elsewhere with sslmode=verify-full", map[string]string{"PHONES_DATABASE_URL": "postgres://u:pw@db.example/db?sslmode=verify-full"}, "", false},
		{"PostgreSQL elsewhere, default sslmode", map[string]string{"PHONES_DATABASE_URL": "postgres://u:pw@db.example/db"}, "PHONES_DATABASE_URL: db.example:5432", false},
		{"PostgreSQL elsewhere with sslmode=disable", map[string]string{"PHONES_DATABASE_URL": "postgresql://u:pw@10.0.0.5:6432/db?sslmode=disable"}, "PHONES_DATABASE_URL: 10.0.0.5:6432", false},
		{"PostgreSQL with sslmode=allow", map[string]string{"PHONES_DATABASE_URL": "postgres://u:pw@db.example/db?sslmode=allow"}, "PHONES_DATABASE_URL: db.example:5432", false},
		{"PostgreSQL, one of several hosts elsewhere", map[string]string{"PHONES_DATABASE_URL": "postgres://u:pw@127.0.0.1:5432,db2.example:5433/db?sslmode=disable"}, "PHONES_DATABASE_URL: db2.example:5433", false},
		{"PostgreSQL elsewhere, insecure transport allowed", map[string]string{"PHONES_DATABASE_URL": "postgres://u:pw@db.example/db?sslmode=disable", "PHONES_ALLOW_INSECURE_TRANSPORT": "true"}, "", false},
		{"NATS elsewhere with a password", map[string]string{"PHONES_EVENTS_URL": "nats://u:pw@nats.example:4222"}, "", true},
		{"NATS elsewhere with a token", map[string]string{"PHONES_EVENTS_URL": "nats://s3cret@nats.example:4222"}, "", true},
		{"NATS, one of several hosts elsewhere", map[string]string{"PHONES_EVENTS_URL": "nats://u:pw@127.0.0.1:4222,nats://u:pw@nats2.example:4222"}, "", true},
		{"NATS elsewhere over tls://", map[string]string{"PHONES_EVENTS_URL": "tls://u:pw@nats.example:4222"}, "", false},
		{"NATS elsewhere without credentials", map[string]string{"PHONES_EVENTS_URL": "nats://nats.example:4222"}, "", false},
		{"NATS on loopback with a password", map[string]string{"PHONES_EVENTS_URL": "nats://u:pw@127.0.0.1:4222"}, "", false},
		{"NATS elsewhere, insecure transport allowed", map[string]string{"PHONES_EVENTS_URL": "nats://u:pw@nats.example:4222", "PHONES_ALLOW_INSECURE_TRANSPORT": "true"}, "", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			env := map[string]string{"PHONES_DATA_DIR": t.TempDir()}
			for k, v := range production {
				env[k] = v
			}
			for k, v := range c.env {
				env[k] = v
			}
			cfg, err := loadConfig(func(k string) string { return env[k] })
			if c.err != "" {
				if err == nil || !strings.HasPrefix(err.Error(), c.err) || strings.Contains(err.Error(), "pw") {
					t.Fatalf("loadConfig: %v; want an error starting %q, without the password", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("loadConfig: %v; want no error", err)
			}
			if cfg.nats.requireTLS != c.requireTLS {
				t.Errorf("NATS connection requires TLS: %v; want %v", cfg.nats.requireTLS, c.requireTLS)
			}
		})
	}
}
