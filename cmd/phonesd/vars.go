package main

import (
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/phonesd/phonesd/internal/auth"
	"github.com/phonesd/phonesd/internal/outbox"
	"github.com/phonesd/phonesd/internal/postgres"
	"github.com/phonesd/phonesd/internal/sink/jetstream"
)

// variable is one PHONES_ environment variable of the service. The table
// below is what `phonesd help` prints and what the unknown-variable warning
// knows, and where loadConfig takes each default from; tests check the
// README's configuration table against it, and each default against what
// loadConfig does with the variable unset.
//
// Each default has one home. A setting whose package has a default of its
// own, for the tests and tools that use the package with zero options
// (outbox's retention, the PostgreSQL pool's, JetStream's stream, the
// token verifier's leeway), is spelt here from the package's constant; any
// other default is written here alone, and the package requires a value.
type variable struct {
	name string
	// def is the default, spelt as a value of the variable; "<data dir>"
	// stands for the data directory. Empty when unset means off, or has no
	// value to spell. With derivation, the default follows other variables
	// and loadConfig derives it, by the function def is computed with here
	// from their defaults.
	def string
	// devDef is the default in development mode, where it differs.
	devDef string
	// defNote says what the default is, in Markdown, where def alone would
	// not (a default in the data directory, or no value at all).
	defNote string
	// derivation says, in Markdown, how a default that follows other
	// variables is derived from them; the README shows it after def.
	derivation string
	// meaning is Markdown, as in the README: its links are relative to
	// the repository's root, where the README is.
	meaning string
}

// variables is every PHONES_ variable phonesd reads, in the README's order.
// To add one: read it in loadConfig, add its row here and the same row to
// the README's configuration table (go test ./cmd/phonesd says where they
// differ).
func variables() []variable {
	return []variable{
		{name: "PHONES_ADDR", def: "127.0.0.1:8080", meaning: "listen address"},
		{name: "PHONES_DATA_DIR", def: "./data", meaning: "data directory (SQLite database, events file, development key, token issuer's key)"},
		{name: "PHONES_DATABASE_URL", def: "sqlite:<data dir>/" + databaseFile, defNote: "`sqlite:` + `" + databaseFile + "` in the data directory",
			meaning: "`sqlite:relative/path.db`, `sqlite:/abs/path.db` or `sqlite:///abs/path.db`; or `postgres://user:password@host:5432/db` (also `postgresql://`), several hosts allowed (`postgres://h1:5432,h2:5432/db`): see [High availability](docs/operations.md#high-availability); a host that is not loopback or a Unix socket needs `sslmode=require`, `verify-ca` or `verify-full` (see [Encrypted transport](docs/operations.md#encrypted-transport))"},
		{name: "PHONES_JWKS_URL", defNote: "development mode", meaning: "key set of the token issuer; `https`, or `http` for a loopback host only"},
		{name: "PHONES_JWT_ISSUER", meaning: "required with `PHONES_JWKS_URL`; must equal `iss`"},
		{name: "PHONES_JWT_AUDIENCE", meaning: "required with `PHONES_JWKS_URL`; `aud` must be it or contain it"},
		{name: "PHONES_JWKS_MAX_STALE", def: "24h", meaning: "how long the key set may go unrefreshed before `/readyz` and the log say so (see [Tokens](docs/api.md#tokens)); `0` turns the warning off"},
		{name: "PHONES_JWT_LEEWAY", def: durationText(auth.DefaultLeeway), meaning: "clock leeway for `exp`, `nbf`, `iat`"},
		{name: "PHONES_JWT_MAX_TTL", def: "24h", meaning: "longest token lifetime accepted: `exp` at most this long after `iat`, else after `nbf`, else after now; `0` accepts any"},
		{name: "PHONES_TOKEN_CACHE_SIZE", def: "10000", meaning: "verified tokens kept, so that a token sent again is not verified again; `0` turns the cache off"},
		{name: "PHONES_EVENTS_URL", def: "file://<data dir>/" + eventsFile, defNote: "`file://` + `" + eventsFile + "` in the data directory",
			meaning: "`file:///abs/path.jsonl`: one event per line, fsynced before it counts as delivered; or `nats://host:4222` (also `tls://`, `user:password@` allowed, several separated by commas): NATS JetStream, see [Running with NATS JetStream](docs/operations.md#running-with-nats-jetstream); a server that is not loopback is reached only over TLS, credentials or not"},
		{name: "PHONES_NATS_CREDS", meaning: "NATS: credentials file (user JWT and seed)"},
		{name: "PHONES_NATS_SUBJECT_PREFIX", def: "accounts", meaning: "NATS: events go to `<prefix>.<domain>.<event_type>`"},
		{name: "PHONES_NATS_STREAM", def: "ACCOUNTS_EVENTS", meaning: "NATS: the stream that must hold them, created when missing"},
		{name: "PHONES_NATS_DUPLICATE_WINDOW", def: durationText(jetstream.DefaultDuplicateWindow), meaning: "NATS: duplicate window of a stream phonesd creates"},
		{name: "PHONES_NATS_REPLICAS", def: strconv.Itoa(jetstream.DefaultReplicas), meaning: "NATS: replicas of a stream phonesd creates (1 to 5); `3` on a three-server cluster, see [High availability](docs/operations.md#high-availability)"},
		{name: "PHONES_OUTBOX_RETENTION", def: durationText(outbox.DefaultRetention), meaning: "how long delivered events stay in the outbox table, counted from their creation"},
		{name: "PHONES_IDEMPOTENCY_TTL", def: "24h", meaning: "how long the answer to an `Idempotency-Key` is kept"},
		{name: "PHONES_STORAGE_TIMEOUT", def: "1500ms", meaning: "the longest a request waits for storage before answering 500: a lost database costs a client under 2 s, not a hang"},
		{name: "PHONES_DB_MAX_CONNS", def: strconv.Itoa(postgres.DefaultMaxConns), meaning: "PostgreSQL: connections in the pool"},
		{name: "PHONES_DB_STATEMENT_TIMEOUT", def: durationText(postgres.DefaultStatementTimeout), meaning: "PostgreSQL: `statement_timeout` (and `idle_in_transaction_session_timeout`) of every connection"},
		// Back-pressure, per replica. A tenant is a whole organisation and
		// its phones change at the pace of its customers and back office:
		// 1000 requests a second on one replica is far above that, yet a
		// runaway client of one tenant takes at most a fraction of a
		// replica (phonesbench: about 6000 creates a second on 2 CPUs) from
		// the others. The burst absorbs two seconds of it, such as a batch
		// job's start. Development mode has no limit: its only tenant is
		// its developer.
		{name: "PHONES_RATE_LIMIT", def: strconv.Itoa(defaultRateLimit), devDef: "0",
			meaning: "API requests a second per tenant, per replica (0.01 or more, decimals allowed); `0` turns the limit off; see [Back-pressure](docs/api.md#back-pressure)"},
		{name: "PHONES_RATE_BURST", def: strconv.Itoa(int(rateBurstDefault(defaultRateLimit))), derivation: "twice `PHONES_RATE_LIMIT`, at least 1", meaning: "requests a tenant may send at once above its rate; an error when the limit is off"},
		// Throughput stops growing by about 64 concurrent requests; at 512 a
		// request waits some 70 ms, still far inside the storage timeout,
		// so a replica that merely runs hot sheds nothing. When storage
		// stalls, each request holds its place up to the storage timeout;
		// the cap then answers the excess 503 at once instead of 500 after
		// the timeout. Each holds at most a 64 KiB body: 512 bodies are at
		// most 32 MiB.
		{name: "PHONES_MAX_IN_FLIGHT", def: strconv.Itoa(defaultMaxInFlight),
			meaning: "authenticated API requests a replica serves at once (1 to 4096); more answer 503 at once. Requests whose token is being checked are bounded apart by the same number"},
		{name: "PHONES_MAX_IN_FLIGHT_PER_TENANT", def: strconv.Itoa(int(perTenantDefault(defaultMaxInFlight))), derivation: "a quarter of `PHONES_MAX_IN_FLIGHT`, rounded down, at least 1", meaning: "requests one tenant may have in progress on a replica; more answer 429"},
		// An account-bound token is one customer's app; the tenant-wide
		// tokens are the bank's own callers (back office, batch jobs). One
		// app serves one person, far below a quarter of its tenant (250
		// requests a second, 32 in progress), and with a quarter a runaway
		// or hostile app leaves its tenant's other callers three quarters.
		{name: "PHONES_ACCOUNT_SHARE", def: "0.25",
			meaning: "the share of its tenant's `PHONES_RATE_LIMIT`, `PHONES_RATE_BURST` and `PHONES_MAX_IN_FLIGHT_PER_TENANT` (each at least 1) that one account may take with account-specific tokens (`account_id`, `uid`), so that one customer's app cannot starve its tenant's other callers; more answer 429. From 0.01 to 1 (1: the tenant's whole); see [Back-pressure](docs/api.md#back-pressure)"},
		{name: "PHONES_BODY_TIMEOUT", def: "5s", meaning: "how long a request body may take to arrive after the headers (a slower one answers 408), and a client to take an answer once it is begun (see [Back-pressure](docs/api.md#back-pressure)); either way the connection is then closed and the request's places are free"},
		{name: "PHONES_LOG_LEVEL", def: "info", meaning: "`debug`, `info`, `warn`, `error`"},
		{name: "PHONES_DEBUG_ADDR", defNote: "off", meaning: "a loopback address serving Go's profiles at `/debug/pprof/`"},
		{name: "PHONES_METRICS_ADDR", defNote: "the API's address", meaning: "an address serving `/metrics` instead of the API's, so that the metrics need not be exposed with the API; the API's `/readyz` then shows its status and checks only"},
		{name: "PHONES_ALLOW_INSECURE_TRANSPORT", def: "false",
			meaning: "`true` lets PostgreSQL and NATS credentials and phone numbers go to hosts that are not loopback without TLS, where the network encrypts them itself (a service mesh); see [Encrypted transport](docs/operations.md#encrypted-transport)"},
	}
}

// The defaults other defaults are derived from, written once here.
const (
	defaultRateLimit   = 1000
	defaultMaxInFlight = 512
)

// rateBurstDefault is PHONES_RATE_BURST's default for a rate limit of rate
// requests a second: two seconds' worth, at least 1 and at most the
// variable's bound.
func rateBurstDefault(rate float64) int32 {
	return max(int32(min(math.Ceil(2*rate), maxRateBurst)), 1)
}

// perTenantDefault is PHONES_MAX_IN_FLIGHT_PER_TENANT's default for a cap of
// maxInFlight: a quarter, so that tenants whose requests all stall (slow
// bodies, a stuck account) leave the replica to nobody else only when they
// are four.
func perTenantDefault(maxInFlight int32) int32 { return max(maxInFlight/4, 1) }

// durationText spells d as the table does: 168h, 10m, 1.5s, without the
// zero minutes and seconds of time.Duration's String.
func durationText(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// notServiceVariable reports PHONES_ names that are not the service's
// configuration but are no typo either: those of the test suites
// (PHONES_TEST_*), of the benchmark (PHONES_BENCH_*), and the failpoints of
// a build with the failpoints tag.
func notServiceVariable(name string) bool {
	return strings.HasPrefix(name, "PHONES_TEST_") || strings.HasPrefix(name, "PHONES_BENCH_") || name == "PHONES_FAILPOINTS"
}

// defaultText is the default as the README and the help show it, in Markdown.
func (v variable) defaultText() string {
	switch {
	case v.derivation != "":
		return "`" + v.def + "`: " + v.derivation
	case v.defNote != "":
		return v.defNote
	case v.def == "":
		return ""
	case v.devDef != "":
		return "`" + v.def + "`; `" + v.devDef + "` in development mode"
	}
	return "`" + v.def + "`"
}

// unknownVariables returns, for each PHONES_ variable of env that phonesd
// does not read, the known name closest to it: most likely a typo.
func unknownVariables(env map[string]string) map[string]string {
	vars := variables()
	known := map[string]bool{}
	for _, v := range vars {
		known[v.name] = true
	}
	out := map[string]string{}
	for name := range env {
		if !strings.HasPrefix(name, "PHONES_") || known[name] || notServiceVariable(name) {
			continue
		}
		closest, best := "", -1
		for _, v := range vars {
			if d := editDistance(name, v.name); best < 0 || d < best {
				closest, best = v.name, d
			}
		}
		out[name] = closest
	}
	return out
}

// editDistance is the Levenshtein distance between a and b, in bytes:
// variable names are ASCII.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// markdownLink is a Markdown link; the help keeps its text.
var markdownLink = regexp.MustCompile(`\[([^\]]+)\]\([^)]*\)`)

// plainText turns the Markdown of the table into what a terminal shows.
func plainText(md string) string {
	return strings.ReplaceAll(markdownLink.ReplaceAllString(md, "$1"), "`", "")
}
