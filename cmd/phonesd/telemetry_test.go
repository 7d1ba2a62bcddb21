package main

import (
	"bytes"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
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
		if !strings.Contains(s.logs.String(), `"trace_id":"`+traceID+`"`) {
			t.Error("the request's log line does not name its trace")
		}
	})
}
