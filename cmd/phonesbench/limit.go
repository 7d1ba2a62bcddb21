package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/phonesd/phonesd/api"
	"github.com/phonesd/phonesd/internal/testkit/launch"
)

// The reference limit (--limit) is cmd/phonesbench/limit: the least a Go
// program does to create a phone as durably as phonesd (see its package
// comment). The bench builds it, starts it on storage of its own beside
// each phonesd, and measures it in the same rotation, so that what phonesd
// reaches is read as a share of what the machine allows that same minute.

const (
	limitPackage = "github.com/phonesd/phonesd/cmd/phonesbench/limit"
	// limitBuild names the limit's runs in the report.
	limitBuild = "limit"
)

// limitAuth is the HS256 secret the bench shares with the limit, and the
// tokens it mints with it.
type limitAuth struct {
	key    []byte
	tokens []string
}

func newLimitAuth() (limitAuth, error) {
	a := limitAuth{key: make([]byte, 32)}
	rand.Read(a.key)
	for i := range tokenCount {
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
			"iss": benchIssuer, "aud": benchAudience, "sub": "bench-operator-" + strconv.Itoa(i+1),
			"tenant_id": benchTenant, "exp": time.Now().Add(tokenTTL).Unix(),
		}).SignedString(a.key)
		if err != nil {
			return a, fmt.Errorf("mint limit token: %w", err)
		}
		a.tokens = append(a.tokens, tok)
	}
	return a, nil
}

// buildLimit builds the limit program into work.
func buildLimit(ctx context.Context, work string) (build, error) {
	bin, err := launch.BuildPackage(ctx, "", work, limitPackage)
	if err != nil {
		return build{}, err
	}
	return build{name: limitBuild, bin: bin, limit: true}, nil
}

// startLimit starts the limit program on the storage at databaseURL.
func startLimit(ctx context.Context, bin, dataDir, databaseURL string, key []byte) (*launch.Process, error) {
	p, err := launch.NewProcess("limit", bin, dataDir, map[string]string{
		"PHONES_DATABASE_URL": databaseURL,
		"PHONES_JWT_ISSUER":   benchIssuer,
		"PHONES_JWT_AUDIENCE": benchAudience,
		"PHONES_LIMIT_KEY":    hex.EncodeToString(key),
	})
	if err != nil {
		return nil, err
	}
	if err := p.Start(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

// checkRepeat sends one create twice to the first of t's servers through
// the public client: the first must be answered 200 and the second 409,
// or whatever is measured would not be a durable create under the
// duplicate rule.
func checkRepeat(ctx context.Context, t *target) error {
	c, err := api.NewClient(t.bases[0], api.Token(t.tokens[0]))
	if err != nil {
		return fmt.Errorf("repeated create: %w", err)
	}
	phone, err := t.request()
	if err != nil {
		return err
	}
	params := api.PostAccountsV1AccountsAccountIdPhonesParams{AccountId: 1}
	for i, want := range []string{"200", "409"} {
		res, err := c.PostAccountsV1AccountsAccountIdPhones(ctx, phone, params)
		if err != nil {
			return fmt.Errorf("repeated create, request %d: %w", i+1, err)
		}
		var got string
		switch r := res.(type) {
		case *api.PostAccountsV1AccountsAccountIdPhonesOKHeaders:
			got = "200"
		case *api.SimpleErrorHeaders:
			got = "409 " + r.Response.Message
		default:
			got = fmt.Sprintf("%T %+v", res, res)
		}
		if !strings.HasPrefix(got, want) {
			return fmt.Errorf("repeated create, request %d: %s; want %s", i+1, got, want)
		}
	}
	return nil
}

// printLimit gives, for each phonesd measured beside the limit, its
// figures over the limit's.
func printLimit(w io.Writer, r report) {
	type key struct {
		backend       string
		preload, conc int
	}
	limits := map[key]levelResult{}
	for _, run := range r.Runs {
		if run.Build == limitBuild {
			for _, l := range run.Levels {
				limits[key{run.Backend, run.Preload, l.Concurrency}] = l
			}
		}
	}
	if len(limits) == 0 {
		return
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "phonesd ÷ the limit (the minimal durable create, cmd/phonesbench/limit), measured in the same rotation (medians of the rounds):")
	fmt.Fprintln(w, "storage µs: phonesd's CPU per create less its CPU per floor request, and the limit's likewise.")
	t := table{header: []string{"phonesd", "backend", "conc", "creates/limit", "cpu/create ÷ limit", "floor/limit", "creates p99 ÷ limit", "storage µs phonesd | limit"}}
	div := func(a, b float64) string {
		if b == 0 {
			return "n/a"
		}
		return fmt.Sprintf("%.2f", a/b)
	}
	for _, run := range r.Runs {
		if run.Build == limitBuild {
			continue
		}
		for _, l := range run.Levels {
			lim, ok := limits[key{run.Backend, run.Preload, l.Concurrency}]
			if !ok {
				continue
			}
			t.add(strings.TrimPrefix(run.Build, "baseline "), run.name(), strconv.Itoa(l.Concurrency),
				div(l.Creates.PerSecond, lim.Creates.PerSecond), div(l.Creates.CPUPerRequestMicros, lim.Creates.CPUPerRequestMicros),
				div(l.Floor.PerSecond, lim.Floor.PerSecond), div(l.Creates.P99ms, lim.Creates.P99ms),
				fmt.Sprintf("%.0f | %.0f", l.Creates.CPUPerRequestMicros-l.Floor.CPUPerRequestMicros, lim.Creates.CPUPerRequestMicros-lim.Floor.CPUPerRequestMicros))
		}
	}
	t.write(w)
}
