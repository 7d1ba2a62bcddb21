package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/phonesd/phonesd/api"
	"github.com/phonesd/phonesd/internal/testkit/latency"
	"github.com/phonesd/phonesd/internal/testkit/procstat"
)

// requestTimeout bounds one request, so that a stuck server ends a
// measurement with errors instead of hanging it.
const requestTimeout = 30 * time.Second

// mode is what a measurement sends.
type mode int

const (
	// createMode sends valid Create phone requests.
	createMode mode = iota
	// floorMode sends the same requests with "type": "INVALID": phonesd does
	// the HTTP, token, decoding and validation work and answers 400 without
	// touching storage.
	floorMode
)

// expected is the status every answer of the mode should have.
func (m mode) expected() int {
	if m == floorMode {
		return http.StatusBadRequest
	}
	return http.StatusOK
}

// numberSource hands out phone numbers unique within the run: a random
// prefix, then a counter, digits only.
type numberSource struct {
	prefix  string
	counter atomic.Int64
	width   int // digits of the counter
}

// newNumberSource returns a source of numbers of the given length, with a
// 5-digit random prefix that does not start with 0.
func newNumberSource(length int) (*numberSource, error) {
	const prefixLen = 5
	n, err := rand.Int(rand.Reader, big.NewInt(90000))
	if err != nil {
		return nil, fmt.Errorf("random number prefix: %w", err)
	}
	return &numberSource{prefix: strconv.FormatInt(10000+n.Int64(), 10), width: length - prefixLen}, nil
}

// appendNext appends the next number to b.
func (s *numberSource) appendNext(b []byte) []byte {
	b = append(b, s.prefix...)
	n := strconv.AppendInt(nil, s.counter.Add(1), 10)
	for range s.width - len(n) {
		b = append(b, '0')
	}
	return append(b, n...)
}

// target is the phonesd replicas under load: worker i sends to
// bases[i % len(bases)], so that the load spreads evenly over them.
type target struct {
	bases    []string
	tokens   []string
	accounts int64
	numbers  *numberSource
	// cpu reads the CPU phonesd has used so far; nil when the bench did
	// not start it.
	cpu func() (time.Duration, error)
}

// body returns a Create phone body with the next number.
func (t *target) body(m mode) []byte {
	b := make([]byte, 0, 80)
	b = append(b, `{"number":"`...)
	b = t.numbers.appendNext(b)
	if m == floorMode {
		b = append(b, `","type":"INVALID","area_code":11,"country_code":55}`...)
	} else {
		b = append(b, `","type":"MOBILE","area_code":11,"country_code":55}`...)
	}
	return b
}

// request returns the valid Create phone request the load sends, with the
// next number, as the public client's type: body's bytes decoded, so that
// the two cannot differ.
func (t *target) request() (*api.PhoneRequest, error) {
	var r api.PhoneRequest
	if err := r.UnmarshalJSON(t.body(createMode)); err != nil {
		return nil, fmt.Errorf("the load's body does not decode: %w", err)
	}
	return &r, nil
}

// worker is one request loop and what it measured.
type worker struct {
	latencies  *latency.Summary // measured requests only, shared by the workers
	statuses   map[int]int64    // measured requests only
	answered   map[int]int64    // warm-up included
	errors     int64            // measured requests only
	firstError error            // warm-up included
	last       time.Time        // when the last measured request ended
}

// load sends requests of mode m from concurrency workers over keep-alive
// connections: warmup, not counted, then duration, measured. A request
// counts when it starts within the measured span; the span ends when the
// last counted request ends.
func (t *target) load(ctx context.Context, m mode, concurrency int, warmup, duration time.Duration) (phaseResult, error) {
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        concurrency,
		MaxIdleConnsPerHost: concurrency,
		MaxConnsPerHost:     concurrency,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: requestTimeout}

	authz := make([]string, len(t.tokens))
	for i, tok := range t.tokens {
		authz[i] = "Bearer " + tok
	}
	start := time.Now()
	from := start.Add(warmup)
	end := from.Add(duration)
	workers := make([]*worker, concurrency)
	latencies := latency.New()
	var wg sync.WaitGroup
	for i := range workers {
		w := &worker{latencies: latencies, statuses: map[int]int64{}, answered: map[int]int64{}}
		workers[i] = w
		wg.Go(func() { t.loop(ctx, client, w, m, t.bases[i%len(t.bases)], authz[i%len(authz)], from, end) })
	}
	// The CPU of phonesd, of this client and of the whole machine over the
	// measured span, read when the warm-up ends and once every counted
	// request has ended.
	cpuFrom := make(chan cpuReading, 1)
	go func() {
		time.Sleep(time.Until(from))
		cpuFrom <- t.readCPU()
	}()
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return phaseResult{}, err
	}
	r := merge(workers, latencies, m, from)
	r.setCPU(<-cpuFrom, t.readCPU())
	return r, nil
}

// cpuReading is the CPU used so far by phonesd (when the bench started
// it), by this process, and by the machine; a field that could not be
// read is negative.
type cpuReading struct {
	phonesd, client time.Duration
	machine, idle   int64
}

func (t *target) readCPU() cpuReading {
	r := cpuReading{phonesd: -1, client: -1, machine: -1, idle: -1}
	if t.cpu != nil {
		if used, err := t.cpu(); err == nil {
			r.phonesd = used
		}
	}
	if used, err := procstat.ProcessCPU(os.Getpid()); err == nil {
		r.client = used
	}
	if total, idle, err := procstat.MachineCPU(); err == nil {
		r.machine, r.idle = total, idle
	}
	return r
}

// loop sends requests until end.
func (t *target) loop(ctx context.Context, client *http.Client, w *worker, m mode, base, authz string, from, end time.Time) {
	for ctx.Err() == nil {
		began := time.Now()
		if !began.Before(end) {
			return
		}
		status, err := t.send(ctx, client, m, base, authz)
		ended := time.Now()
		if err != nil {
			if w.firstError == nil {
				w.firstError = err
			}
			if !began.Before(from) {
				w.errors++
				w.last = ended
			}
			// A server that is gone refuses connections at once: do not spin.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		w.answered[status]++
		if began.Before(from) {
			continue
		}
		w.latencies.Record(ended.Sub(began))
		w.statuses[status]++
		w.last = ended
	}
}

// send makes one request to base and reads the whole answer. It builds
// the request by hand, not through the public client, which checkRepeat
// uses: the load shares the machine with phonesd, so its client spends as
// little CPU per request as it can (the body written straight into bytes,
// no answer decoded or validated), and that is the same for every build
// measured, the floor's invalid bodies included.
func (t *target) send(ctx context.Context, client *http.Client, m mode, base, authz string) (int, error) {
	url := base + "/accounts/v1/accounts/" + strconv.FormatInt(mrand.Int64N(t.accounts)+1, 10) + "/phones"
	// A fresh body each time: the transport may still read it after Do returns.
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(t.body(m)))
	if err != nil {
		return 0, err
	}
	req.Header["Authorization"] = []string{authz}
	req.Header["Content-Type"] = []string{"application/json"}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return 0, fmt.Errorf("read answer: %w", err)
	}
	return resp.StatusCode, nil
}

// merge sums the workers' measurements. The rate counts the answers with
// the mode's expected status only: a fast 500 is no create.
func merge(workers []*worker, latencies *latency.Summary, m mode, from time.Time) phaseResult {
	r := phaseResult{Statuses: map[string]int64{}, answered: map[int]int64{}}
	last := from
	for _, w := range workers {
		for s, n := range w.statuses {
			r.Statuses[strconv.Itoa(s)] += n
		}
		for s, n := range w.answered {
			r.answered[s] += n
		}
		r.TransportErrors += w.errors
		if w.firstError != nil && r.FirstError == "" {
			r.FirstError = w.firstError.Error()
		}
		if w.last.After(last) {
			last = w.last
		}
	}
	r.Requests = latencies.Count() + r.TransportErrors
	r.Seconds = last.Sub(from).Seconds()
	if r.Seconds > 0 {
		r.PerSecond = float64(r.Statuses[strconv.Itoa(m.expected())]) / r.Seconds
	}
	r.P50ms = millis(latencies.Quantile(0.50))
	r.P90ms = millis(latencies.Quantile(0.90))
	r.P99ms = millis(latencies.Quantile(0.99))
	r.MaxMs = millis(latencies.Max())
	return r
}

func millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
