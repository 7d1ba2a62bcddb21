package main

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/phonesd/phonesd/internal/testkit/natstest"
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
		{"NATS elsewhere over tls://", map[string]string{"PHONES_EVENTS_URL": "tls://u:pw@nats.example:4222"}, "", true},
		// Its events carry phone numbers.
		{"NATS elsewhere without credentials", map[string]string{"PHONES_EVENTS_URL": "nats://nats.example:4222"}, "", true},
		{"NATS at an address elsewhere, without credentials", map[string]string{"PHONES_EVENTS_URL": "nats://10.0.0.7:4222"}, "", true},
		{"NATS on loopback with a password", map[string]string{"PHONES_EVENTS_URL": "nats://u:pw@127.0.0.1:4222"}, "", false},
		{"NATS on localhost and ::1", map[string]string{"PHONES_EVENTS_URL": "nats://localhost:4222,nats://[::1]:4223"}, "", false},
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

// TestUncheckedDatabaseCertificateWarns: sslmode=require encrypts but takes
// any certificate; the start says so, naming verify-full, for a host that
// is not loopback.
func TestUncheckedDatabaseCertificateWarns(t *testing.T) {
	for _, c := range []struct {
		name, url string
		warn      bool
	}{
		{"require elsewhere", "postgres://u:pw@db.example/db?sslmode=require", true},
		{"require on one host of two", "postgres://u:pw@db1.example:5432,db2.example:5433/db?sslmode=require", true},
		{"verify-full elsewhere", "postgres://u:pw@db.example/db?sslmode=verify-full", false},
		{"verify-ca elsewhere", "postgres://u:pw@db.example/db?sslmode=verify-ca", false},
		{"require on loopback", "postgres://u:pw@127.0.0.1/db?sslmode=require", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			env := map[string]string{
				"PHONES_DATA_DIR": t.TempDir(), "PHONES_DATABASE_URL": c.url,
				"PHONES_JWKS_URL": "https://keys.example/jwks", "PHONES_JWT_ISSUER": "i", "PHONES_JWT_AUDIENCE": "a",
			}
			cfg, err := loadConfig(func(k string) string { return env[k] })
			if err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			cfg.warnTransport(slog.New(slog.NewJSONHandler(&logs, nil)))
			warned := strings.Contains(logs.String(), "sslmode=verify-full")
			if warned != c.warn || strings.Contains(logs.String(), "pw") {
				t.Errorf("start log %q; want a warning naming verify-full: %v, and no password", logs.String(), c.warn)
			}
		})
	}
}

// TestNATSElsewhereWithoutTLSRefused points phonesd, without credentials,
// at a server on this machine's non-loopback address that offers no TLS:
// the start stops with one line naming PHONES_EVENTS_URL, phonesd check
// -connect logs that line, and the server hears nothing from either, not
// even a CONNECT.
func TestNATSElsewhereWithoutTLSRefused(t *testing.T) {
	ip := nonLoopbackIP(t)
	impostor, err := natstest.StartImpostor(net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer impostor.Close()
	keys := newTestKeys(t)
	env := map[string]string{
		"PHONES_ADDR": "127.0.0.1:0", "PHONES_DATA_DIR": t.TempDir(),
		"PHONES_JWKS_URL": keys.url, "PHONES_JWT_ISSUER": testIssuer, "PHONES_JWT_AUDIENCE": testAudience,
		"PHONES_EVENTS_URL": "nats://" + impostor.Addr(),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = run(ctx, []string{"phonesd"}, env, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.HasPrefix(err.Error(), "PHONES_EVENTS_URL: ") || strings.Contains(err.Error(), "\n") {
		t.Errorf("run: %v; want one line starting PHONES_EVENTS_URL", err)
	}
	t.Logf("run: %v", err)
	out, err := check(t, env, "-connect")
	if err == nil || !strings.Contains(out, `"err":"PHONES_EVENTS_URL: `) || !strings.Contains(out, "offers no TLS") {
		t.Errorf("phonesd check -connect: %v\n%s\nwant a failure, and the start's line naming PHONES_EVENTS_URL", err, out)
	}
	if got := impostor.Received(); len(got) > 0 {
		t.Errorf("the server heard %d lines, the first %q; want nothing", len(got), got[0])
	}
}

// nonLoopbackIP returns an IPv4 address of this machine that is not
// loopback, or skips t when there is none.
func nonLoopbackIP(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
			return n.IP.String()
		}
	}
	t.Skip("no network interface with an address other than loopback")
	return ""
}
