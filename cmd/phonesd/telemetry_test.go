package main

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// scrape reads the metrics at url, as Prometheus would.
func scrape(t *testing.T, url string) (text []byte, families map[string]*dtoFamily) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	text, err = io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mf, err := parser.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		t.Fatalf("the metrics are not Prometheus's text format: %v", err)
	}
	families = map[string]*dtoFamily{}
	for name, f := range mf {
		families[name] = &dtoFamily{f}
	}
	return text, families
}

// dtoFamily is a metric family as scraped.
type dtoFamily struct{ *dto.MetricFamily }

// value is the value of the family's series with labels (a histogram's
// count of observations), 0 when there is none.
func (f *dtoFamily) value(labels map[string]string) float64 {
	for _, m := range f.Metric {
		match := 0
		for _, lp := range m.Label {
			if v, ok := labels[lp.GetName()]; ok && v == lp.GetValue() {
				match++
			}
		}
		if match != len(labels) {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return 0
}

// counter is the value of the series of family name with labels, 0 when
// absent.
func counter(families map[string]*dtoFamily, name string, labels map[string]string) float64 {
	f, ok := families[name]
	if !ok {
		return 0
	}
	return f.value(labels)
}

// TestMetrics sends requests of several kinds and reads /metrics: it passes
// promtool's lint, and its counters moved by exactly what was sent.
func TestMetrics(t *testing.T) {
	forBackends(t, func(t *testing.T, b backend) {
		s := b.start(t, nil)
		_, before := scrape(t, s.base+"/metrics")
		for i := range 3 {
			createdID(t, s.create(1, `{"number": "4`+strings.Repeat("1", i+1)+`", "type": "MOBILE"}`))
		}
		if r := s.create(1, `{"number": "1", "type": "FAX"}`); r.status != http.StatusBadRequest {
			t.Fatalf("bad type: status %d", r.status)
		}
		if r := s.do(http.MethodPost, "/accounts/v1/accounts/1/phones", okBody, bearer("not.a.token"), jsonCT); r.status != http.StatusUnauthorized {
			t.Fatalf("bad token: status %d", r.status)
		}
		if r := s.do(http.MethodGet, "/accounts/v1/accounts/1/phones", ""); r.status != http.StatusUnauthorized {
			t.Fatalf("no token: status %d", r.status)
		}
		if r := s.do(http.MethodGet, "/nowhere", ""); r.status != http.StatusNotFound {
			t.Fatalf("unknown path: status %d", r.status)
		}
		s.events(3)
		// The relay counts its deliveries once it has marked them, just
		// after the events file has them.
		text, after := scrape(t, s.base+"/metrics")
		for deadline := time.Now().Add(5 * time.Second); counter(after, "phonesd_outbox_events_delivered_total", map[string]string{"sink": "file"}) < 3 && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
			text, after = scrape(t, s.base+"/metrics")
		}

		for _, c := range []struct {
			name   string
			labels map[string]string
			moved  float64
		}{
			{"phonesd_http_requests_total", map[string]string{"operation": "createPhone", "method": "POST", "code": "200"}, 3},
			{"phonesd_http_requests_total", map[string]string{"operation": "createPhone", "method": "POST", "code": "400"}, 1},
			{"phonesd_http_requests_total", map[string]string{"operation": "createPhone", "method": "POST", "code": "401"}, 1},
			{"phonesd_http_requests_total", map[string]string{"operation": "listPhones", "method": "GET", "code": "401"}, 1},
			{"phonesd_http_requests_total", map[string]string{"operation": "unmatched", "method": "GET", "code": "404"}, 1},
			{"phonesd_token_rejections_total", map[string]string{"reason": "malformed"}, 1},
			{"phonesd_token_rejections_total", map[string]string{"reason": "missing"}, 1},
			{"phonesd_http_request_duration_seconds", map[string]string{"operation": "createPhone"}, 5},
			{"phonesd_outbox_events_delivered_total", map[string]string{"sink": "file"}, 3},
		} {
			if got := counter(after, c.name, c.labels) - counter(before, c.name, c.labels); got != c.moved {
				t.Errorf("%s%v moved by %v; want %v", c.name, c.labels, got, c.moved)
			}
		}
		for _, name := range []string{"phonesd_jwks_age_seconds", "go_goroutines", "process_cpu_seconds_total",
			"phonesd_outbox_pending_events", "phonesd_outbox_oldest_pending_age_seconds", "phonesd_group_commit_waiting_creates"} {
			if _, ok := after[name]; !ok {
				t.Errorf("no %s in /metrics", name)
			}
		}
		// The three creates went through the group commit, in one batch
		// or more, and this replica's relay holds the lease.
		if commits := counter(after, "phonesd_group_commit_batch_size", nil) - counter(before, "phonesd_group_commit_batch_size", nil); commits < 1 || commits > 3 {
			t.Errorf("%v group commits for 3 creates sent one after another; want 1 to 3", commits)
		}
		// Each create stops waiting for its commit before it is answered.
		if w := counter(after, "phonesd_group_commit_waiting_creates", nil); w != 0 {
			t.Errorf("phonesd_group_commit_waiting_creates %v once every create is answered; want 0", w)
		}
		if held := counter(after, "phonesd_outbox_relay_lease_held", nil); held != 1 {
			t.Errorf("phonesd_outbox_relay_lease_held %v; want 1", held)
		}
		if b.name == "postgres" {
			if _, ok := after["phonesd_db_pool_total_connections"]; !ok {
				t.Error("no phonesd_db_pool_total_connections on PostgreSQL")
			}
		}
		for _, forbidden := range []string{"TN-", s.token[:20], "/accounts/v1/accounts/1"} {
			if bytes.Contains(text, []byte(forbidden)) {
				t.Errorf("/metrics holds %q: no label may carry a tenant, a token or a path", forbidden)
			}
		}
		promtoolCheck(t, text)
	})
}

// promtoolCheck lints the metrics with Prometheus's own promtool, which
// .ci/run installs; elsewhere the test says how to get it.
func promtoolCheck(t *testing.T, text []byte) {
	t.Helper()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("PHONES_TEST_REQUIRE_TOOLS") != "" {
			t.Fatal("promtool is not installed; .ci/run installs Debian's prometheus package")
		}
		t.Log("promtool check skipped: install Debian's prometheus package (.ci/run does)")
		return
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(text)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// TestMetricsOnTheirOwnAddress: with PHONES_METRICS_ADDR, /metrics is
// served there and not beside the API.
func TestMetricsOnTheirOwnAddress(t *testing.T) {
	addr := freeAddr(t)
	s := start(t, map[string]string{"PHONES_METRICS_ADDR": addr})
	if r := s.do(http.MethodGet, "/metrics", ""); r.status != http.StatusNotFound {
		t.Errorf("/metrics on the API's address: status %d; want 404", r.status)
	}
	_, families := scrape(t, "http://"+addr+"/metrics")
	if _, ok := families["phonesd_http_requests_total"]; !ok {
		t.Error("no phonesd_http_requests_total on PHONES_METRICS_ADDR")
	}
}

// TestEndpointsOnAPublicAddress starts phonesd on every address of the
// machine (0.0.0.0). With the metrics beside the API, the start warns,
// naming PHONES_METRICS_ADDR, and /metrics and the detail of /readyz are
// served there; with PHONES_METRICS_ADDR, nothing is warned of, and the
// API's address serves no /metrics and a /readyz of status and checks
// only. The key set is stale at once (PHONES_JWKS_MAX_STALE=1ms), so that
// /readyz has a warning to show or keep.
func TestEndpointsOnAPublicAddress(t *testing.T) {
	public := func(t *testing.T) string {
		_, port, err := net.SplitHostPort(freeAddr(t))
		if err != nil {
			t.Fatal(err)
		}
		return net.JoinHostPort("0.0.0.0", port)
	}
	const warning = "PHONES_METRICS_ADDR is unset"
	readyz := func(t *testing.T, s *phonesd) map[string]any {
		t.Helper()
		r := s.do(http.MethodGet, "/readyz", "")
		if r.status != http.StatusOK {
			t.Fatalf("/readyz: %d %s", r.status, r.body)
		}
		return r.json(t)
	}
	t.Run("metrics beside the API", func(t *testing.T) {
		s := start(t, map[string]string{"PHONES_ADDR": public(t), "PHONES_JWKS_MAX_STALE": "1ms"})
		if !strings.Contains(s.logs.String(), warning) {
			t.Errorf("no warning naming PHONES_METRICS_ADDR at start:\n%s", s.logs.String())
		}
		if r := s.do(http.MethodGet, "/metrics", ""); r.status != http.StatusOK {
			t.Errorf("/metrics on the API's address: %d; want 200", r.status)
		}
		body := readyz(t, s)
		if body["outbox"] == nil || body["warnings"] == nil {
			t.Errorf("/readyz: %v; want the outbox backlog and the stale key set's warning", body)
		}
	})
	t.Run("metrics on their own address", func(t *testing.T) {
		metricsAddr := freeAddr(t)
		s := start(t, map[string]string{"PHONES_ADDR": public(t), "PHONES_JWKS_MAX_STALE": "1ms", "PHONES_METRICS_ADDR": metricsAddr})
		if strings.Contains(s.logs.String(), warning) {
			t.Errorf("warned of the metrics beside the API, though they have an address of their own:\n%s", s.logs.String())
		}
		if r := s.do(http.MethodGet, "/metrics", ""); r.status != http.StatusNotFound {
			t.Errorf("/metrics on the API's address: %d; want 404", r.status)
		}
		body := readyz(t, s)
		if body["outbox"] != nil || body["warnings"] != nil || body["status"] != "ready" || body["checks"] == nil {
			t.Errorf("/readyz: %v; want its status and checks only", body)
		}
		_, families := scrape(t, "http://"+metricsAddr+"/metrics")
		for _, name := range []string{"phonesd_outbox_pending_events", "phonesd_jwks_age_seconds"} {
			if _, ok := families[name]; !ok {
				t.Errorf("no %s on PHONES_METRICS_ADDR: the detail /readyz leaves out must be there", name)
			}
		}
	})
	t.Run("loopback", func(t *testing.T) {
		s := start(t, nil)
		if strings.Contains(s.logs.String(), warning) {
			t.Errorf("warned of the metrics beside an API on loopback:\n%s", s.logs.String())
		}
	})
}

// otlpReceiver is an OTLP/HTTP trace receiver on loopback that keeps what
// it is sent.
type otlpReceiver struct {
	*httptest.Server
	mu    sync.Mutex
	spans []*tracepb.Span
}

func newOTLPReceiver(t *testing.T) *otlpReceiver {
	t.Helper()
	o := &otlpReceiver{}
	o.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil || r.URL.Path != "/v1/traces" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		var req collectortrace.ExportTraceServiceRequest
		if err := proto.Unmarshal(body, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		o.mu.Lock()
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				o.spans = append(o.spans, ss.Spans...)
			}
		}
		o.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
		w.Write(out)
	}))
	t.Cleanup(o.Close)
	return o
}

// named returns the spans called name.
func (o *otlpReceiver) named(name string) []*tracepb.Span {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []*tracepb.Span
	for _, s := range o.spans {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

// linkedFrom reports whether one of spans has a link to target.
func linkedFrom(spans []*tracepb.Span, target *tracepb.Span) bool {
	for _, s := range spans {
		for _, l := range s.Links {
			if bytes.Equal(l.TraceId, target.TraceId) && bytes.Equal(l.SpanId, target.SpanId) {
				return true
			}
		}
	}
	return false
}

// TestTraces sends a create carrying a client's traceparent to a phonesd
// exporting to an OTLP/HTTP receiver: the server span continues the
// client's trace, the storage span is its child, and the log line of the
// request names the trace.
func TestTraces(t *testing.T) {
	forBackends(t, func(t *testing.T, b backend) {
		o := newOTLPReceiver(t)
		s := b.start(t, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": o.URL})
		const traceID, parentID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
		createdID(t, s.create(1, okBody, [2]string{"traceparent", "00-" + traceID + "-" + parentID + "-01"}))
		s.events(1)
		// Stopping flushes the spans still batched.
		if err := s.stop(); err != nil {
			t.Fatal(err)
		}
		servers := o.named("createPhone")
		if len(servers) != 1 {
			t.Fatalf("%d createPhone spans; want 1", len(servers))
		}
		srv := servers[0]
		if got := hex.EncodeToString(srv.TraceId); got != traceID {
			t.Errorf("server span's trace %s; want the client's %s", got, traceID)
		}
		if got := hex.EncodeToString(srv.ParentSpanId); got != parentID {
			t.Errorf("server span's parent %s; want the client's span %s", got, parentID)
		}
		if srv.Kind != tracepb.Span_SPAN_KIND_SERVER {
			t.Errorf("server span's kind %v", srv.Kind)
		}
		stores := o.named("store.CreatePhone")
		if len(stores) != 1 || !bytes.Equal(stores[0].ParentSpanId, srv.SpanId) || !bytes.Equal(stores[0].TraceId, srv.TraceId) {
			t.Fatalf("store.CreatePhone spans %v; want one, the child of the server span", stores)
		}
		// The commit that carried the create is a span of its own, linked
		// from the create's; the relay's delivery links back to the request.
		if !linkedFrom(o.named("groupcommit.commit"), stores[0]) {
			t.Error("no groupcommit.commit span links to the create's store span")
		}
		if !linkedFrom(o.named("outbox.deliver"), srv) {
			t.Error("no outbox.deliver span links to the create's server span")
		}
		// The request's line names its trace (written within logInterval).
		s.waitLogged(`"trace_id":"`+traceID+`"`, 10*time.Second)
	})
}

// TestMetricSeriesStayBoundedWhateverClientsSend sends two rounds of the
// same kinds of requests, each with values made up afresh: methods (up to
// 4 KiB, lower case, on every kind of path), paths, header values and
// token claims. The first round may add the series of the answers it gets;
// the second, whose requests differ from the first only by their made-up
// values, must add none to any metric: a label that took a value from a
// request would grow by one series per request, without bound.
func TestMetricSeriesStayBoundedWhateverClientsSend(t *testing.T) {
	// Without a rate limit, the two rounds get the same answers.
	s := start(t, map[string]string{"PHONES_RATE_LIMIT": "0"})
	scrape(t, s.base+"/metrics") // the scrape's own series
	created := 0
	round := func(seed uint64) map[string]bool {
		rng := rand.New(rand.NewPCG(seed, seed))
		made := func(n int) string {
			const letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
			b := make([]byte, n)
			for i := range b {
				b[i] = letters[rng.IntN(len(letters))]
			}
			return string(b)
		}
		send := func(method, path, body string, headers ...[2]string) response {
			t.Helper()
			req, err := http.NewRequest(method, s.base+path, strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			req.Host = strings.ToLower(made(12)) + ".example"
			for _, h := range headers {
				req.Header.Add(h[0], h[1])
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatalf("%.20s %s: %v", method, path, err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return response{status: resp.StatusCode, header: resp.Header, body: b}
		}
		account := 1 + rng.Int64N(1e9)
		collection := fmt.Sprintf("/accounts/v1/accounts/%d/phones", account)
		paths := []string{"/" + made(20), "/accounts/v1/accounts/" + made(8) + "/phones/" + made(8),
			collection, collection + "/1", "/metrics", "/readyz", "/healthz", "/openapi.json", "/docs"}
		for _, method := range []string{made(1), made(4096), strings.ToLower(made(7)), "get", "PUT", "DELETE", "OPTIONS"} {
			for _, path := range paths {
				send(method, path, "", bearer(s.token))
			}
		}
		for range 5 {
			send(http.MethodGet, "/"+made(1+rng.IntN(2000)), "")
			send(http.MethodGet, "/accounts/v1/accounts/"+made(10)+"/phones", "", bearer(s.token))
			send(http.MethodGet, collection+"/%"+fmt.Sprintf("%02X", rng.IntN(256))+made(5), "", bearer(s.token))
		}
		// Made-up header values on requests otherwise good.
		madeHeaders := [][2]string{
			{"X-Cid", made(1 + rng.IntN(128))},
			{"Traceparent", "00-" + hex.EncodeToString([]byte(made(16))) + "-" + hex.EncodeToString([]byte(made(8))) + "-01"},
			{"Accept", made(30)}, {"User-Agent", made(200)}, {"X-" + made(10), made(100)},
		}
		if r := send(http.MethodGet, collection, "", append(madeHeaders, bearer(s.token))...); r.status != http.StatusOK {
			t.Fatalf("list with made-up headers: %d %s", r.status, r.body)
		}
		number := fmt.Sprintf(`{"number": "%d", "type": "MOBILE"}`, 10_000_000+rng.IntN(89_999_999))
		r := send(http.MethodPost, collection, number, append(madeHeaders, bearer(s.token), jsonCT, [2]string{"Idempotency-Key", made(40)})...)
		id := createdID(t, r)
		created++
		for _, h := range [][2]string{{"Content-Type", made(20) + "/" + made(10)}, {"X-Customer-Id", made(12)}} {
			send(http.MethodPost, collection, number, bearer(s.token), jsonCT, h)
		}
		send(http.MethodPatch, fmt.Sprintf("%s/%d", collection, id), `{"active": false}`, bearer(s.token), jsonCT, [2]string{"If-Match", `"` + made(10) + `"`})
		send(http.MethodPatch, fmt.Sprintf("%s/%d", collection, id), `{"active": false}`, bearer(s.token), jsonCT, [2]string{"If-Match", fmt.Sprintf(`"%d"`, 1000+rng.IntN(1e6))})
		// Made-up tokens and schemes, and good tokens with made-up claims.
		send(http.MethodGet, collection, "", [2]string{"Authorization", "Bearer " + made(300)})
		send(http.MethodGet, collection, "", [2]string{"Authorization", made(6) + " " + made(300)})
		send(http.MethodGet, collection, "", bearer(made(20)+"."+made(60)+"."+made(40)))
		tok := s.keys.token(t, claims{"tenant_id": "TN-" + made(20), "email": made(30) + "@" + made(10), "roles": []string{made(50), "<" + made(20) + ">"}, "origin": made(40), "sub": made(30)})
		if r := send(http.MethodGet, collection, "", bearer(tok)); r.status != http.StatusOK {
			t.Fatalf("list with a token of made-up claims: %d %s", r.status, r.body)
		}
		s.keys.kid = made(10)
		send(http.MethodGet, collection, "", bearer(s.keys.token(t, nil)))
		s.keys.kid = "test-key-1"
		s.events(created)
		// The relay counts a delivery once it has marked it, just after
		// the events file has it.
		for deadline := time.Now().Add(5 * time.Second); ; {
			_, families := scrape(t, s.base+"/metrics")
			if counter(families, "phonesd_outbox_events_delivered_total", map[string]string{"sink": "file"}) >= float64(created) || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		_, families := scrape(t, s.base+"/metrics")
		return seriesOf(families)
	}
	first := round(1)
	second := round(2)
	var grown []string
	for k := range second {
		if !first[k] {
			grown = append(grown, k)
		}
	}
	slices.Sort(grown)
	if len(grown) > 0 {
		examples := grown[:min(len(grown), 5)]
		for i, g := range examples {
			if len(g) > 160 {
				examples[i] = g[:160] + "..."
			}
		}
		t.Errorf("%d series after the first round; the second, with other made-up values, added %d (want 0), such as:\n%s",
			len(first), len(grown), strings.Join(examples, "\n"))
		return
	}
	t.Logf("%d series after each round", len(first))
}

// seriesOf names each series of families by its metric and labels.
func seriesOf(families map[string]*dtoFamily) map[string]bool {
	out := map[string]bool{}
	for name, f := range families {
		for _, m := range f.Metric {
			var labels []string
			for _, lp := range m.Label {
				labels = append(labels, lp.GetName()+"="+strconv.Quote(lp.GetValue()))
			}
			slices.Sort(labels)
			out[name+"{"+strings.Join(labels, ",")+"}"] = true
		}
	}
	return out
}
