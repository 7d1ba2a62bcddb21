package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// slowlorisLimit is how long phonesd may let a client take over its
// request headers: ReadHeaderTimeout is 5 s, plus scheduling on a busy box.
const slowlorisLimit = 10 * time.Second

// hostileStat is what one kind of hostile client sent and got.
type hostileStat struct {
	kind   string
	unit   string // what it counts: requests, or connections
	expect []int  // the statuses phonesd must answer with

	mu       sync.Mutex
	sent     int
	statuses map[int]int
	// dropped counts requests whose connection phonesd closed without an
	// answer: legitimate for a request it refuses before reading it all.
	dropped    int
	unexpected []string
	extra      int // unexpected answers beyond those kept
	maxHold    time.Duration
}

func newStat(kind, unit string, expect ...int) *hostileStat {
	return &hostileStat{kind: kind, unit: unit, expect: expect, statuses: map[int]int{}}
}

func (h *hostileStat) record(status int, what string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.sent++
	if status == 0 {
		h.dropped++
		return
	}
	h.statuses[status]++
	if !slices.Contains(h.expect, status) {
		if len(h.unexpected) < 5 {
			h.unexpected = append(h.unexpected, fmt.Sprintf("%s answered %d; want %v", what, status, h.expect))
		} else {
			h.extra++
		}
	}
}

func (h *hostileStat) String() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var parts []string
	for _, code := range slices.Sorted(maps.Keys(h.statuses)) {
		parts = append(parts, fmt.Sprintf("%d×%d", h.statuses[code], code))
	}
	if h.dropped > 0 {
		parts = append(parts, fmt.Sprintf("%d closed by phonesd without an answer", h.dropped))
	}
	s := fmt.Sprintf("%s: %d %s", h.kind, h.sent, h.unit)
	if len(parts) > 0 {
		s += ", " + strings.Join(parts, ", ")
	}
	if h.maxHold > 0 {
		s += fmt.Sprintf(", longest held %.1fs", h.maxHold.Seconds())
	}
	if h.extra > 0 {
		s += fmt.Sprintf(" (%d more unexpected answers)", h.extra)
	}
	return s
}

// hostile is the hostile clients of a run, until their stop channel closes.
type hostile struct {
	wg    sync.WaitGroup
	stats []*hostileStat
}

// startHostile starts the hostile clients against addr: slow connections
// sending headers a byte at a time, many and huge headers, deeply nested
// JSON and 2 MiB bodies. All are bounded in number and rate, and their
// requests are built once, so that the checker's own work does not crowd
// the box.
func startHostile(addr, token string, slow int, stop <-chan struct{}) *hostile {
	h := &hostile{}
	slowloris := newStat("slowloris", "connections") // the server must close them, not answer
	manyHeaders := newStat("100 headers within the limit", "requests", 200)
	hugeHeaders := newStat("headers over the 16 KiB limit", "requests", 431)
	deep := newStat("10,000-deep JSON", "requests", 400)
	big := newStat("2 MiB bodies", "requests", 413)
	h.stats = []*hostileStat{slowloris, manyHeaders, hugeHeaders, deep, big}

	// Raw HTTP and raw bytes throughout: header floods, deep JSON and oversized bodies are requests the public client cannot send.
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 8}}
	base := "http://" + addr
	path := "/accounts/v1/accounts/1/phones"

	flood := http.Header{"Authorization": {"Bearer " + token}}
	for j := range 100 {
		flood.Set("X-Flood-"+strconv.Itoa(j), strings.Repeat("f", 100))
	}
	head := "GET " + path + " HTTP/1.1\r\nHost: " + addr + "\r\nAuthorization: Bearer " + token + "\r\n"
	huge := []string{head + "X-Huge: " + strings.Repeat("h", 64<<10) + "\r\n\r\n", head}
	for j := range 1000 {
		huge[1] += fmt.Sprintf("X-Many-%d: %s\r\n", j, strings.Repeat("m", 30))
	}
	huge[1] += "\r\n"
	hugeWhat := []string{"GET with a 64 KiB header", "GET with 1000 headers"}
	var deepBodies [3][]byte
	var deepWhat [3]string
	for i := range deepBodies {
		deepBodies[i], deepWhat[i] = deepJSON(i)
	}
	payload := bytes.Repeat([]byte("x"), 2<<20)

	for range slow {
		h.wg.Go(func() { slowLoris(addr, path, slowloris, stop) })
	}
	h.wg.Go(func() {
		loop(stop, hostilePause, func(i int) {
			req, _ := http.NewRequest(http.MethodGet, base+path, nil)
			req.Header = flood.Clone()
			manyHeaders.record(send(hc, req), "GET with 100 headers of 100 bytes")
		})
	})
	h.wg.Go(func() {
		loop(stop, hostilePause, func(i int) {
			hugeHeaders.record(rawExchange(addr, huge[i%2]), hugeWhat[i%2])
		})
	})
	h.wg.Go(func() {
		loop(stop, hostilePause, func(i int) {
			req, _ := http.NewRequest(http.MethodPost, base+path, bytes.NewReader(deepBodies[i%3]))
			req.Header.Set("Authorization", "Bearer "+token)
			req.Header.Set("Content-Type", "application/json")
			deep.record(send(hc, req), deepWhat[i%3])
		})
	})
	h.wg.Go(func() {
		loop(stop, bigPause, func(i int) {
			var rd io.Reader = bytes.NewReader(payload)
			what := "POST of 2 MiB with Content-Length"
			if i%2 == 1 {
				// No length: sent chunked, refused once read past the limit.
				rd = io.MultiReader(bytes.NewReader(payload))
				what = "POST of 2 MiB, chunked"
			}
			req, _ := http.NewRequest(http.MethodPost, base+path, rd)
			req.Header.Set("Authorization", "Bearer "+token)
			req.Header.Set("Content-Type", "application/json")
			big.record(send(hc, req), what)
		})
	})
	return h
}

// The pauses between two requests of a hostile client: each kind but the
// slow connections sends up to 50 requests a second, the 2 MiB bodies 10.
const (
	hostilePause = 20 * time.Millisecond
	bigPause     = 100 * time.Millisecond
)

// wait waits for the hostile clients to stop and returns their stats,
// slowloris's limit checked.
func (h *hostile) wait() []*hostileStat {
	h.wg.Wait()
	if len(h.stats) > 0 && h.stats[0].maxHold > slowlorisLimit {
		s := h.stats[0]
		s.unexpected = append(s.unexpected, fmt.Sprintf("a connection sending its headers a byte at a time was held %.1fs; want it closed within %s", s.maxHold.Seconds(), slowlorisLimit))
	}
	return h.stats
}

// loop calls f with a counter until stop closes, pausing between calls.
func loop(stop <-chan struct{}, pause time.Duration, f func(i int)) {
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		f(i)
		select {
		case <-stop:
			return
		case <-time.After(pause):
		}
	}
}

// send sends req and returns the status, 0 when no answer came.
func send(hc *http.Client, req *http.Request) int {
	resp, err := hc.Do(req)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// rawExchange writes request on a new connection and reads the status of
// the answer; 0 when the connection closed without one.
func rawExchange(addr, request string) int {
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return 0
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	// The server may answer and close before it has read everything, so
	// the write may fail while an answer waits to be read.
	go conn.Write([]byte(request))
	return readStatus(bufio.NewReader(conn))
}

// readStatus reads an HTTP/1.1 status line; 0 when there is none.
func readStatus(r *bufio.Reader) int {
	line, err := r.ReadString('\n')
	if err != nil && line == "" {
		return 0
	}
	f := strings.Fields(line)
	if len(f) < 2 || !strings.HasPrefix(f[0], "HTTP/") {
		return 0
	}
	code, _ := strconv.Atoi(f[1])
	return code
}

// slowLoris keeps one connection sending a request's headers a byte every
// 100 ms, opening a new one whenever phonesd closes it, until stop.
func slowLoris(addr, path string, st *hostileStat, stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		opened := time.Now()
		closed := make(chan int, 1)
		go func() { closed <- readStatus(bufio.NewReader(conn)) }()
		conn.Write([]byte("POST " + path + " HTTP/1.1\r\nHost: " + addr + "\r\n"))
		header := []byte("X-Slow: " + strings.Repeat("s", 1<<14))
		held := func() bool {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return false
				case <-closed:
					// Closing the connection, with or without an answer
					// (a 408, say), is the expected end.
					st.mu.Lock()
					st.maxHold = max(st.maxHold, time.Since(opened))
					st.mu.Unlock()
					st.record(0, "")
					return true
				case <-time.After(100 * time.Millisecond):
					conn.Write(header[i%len(header) : i%len(header)+1])
				}
			}
		}()
		conn.Close()
		if !held {
			return
		}
	}
}

// deepJSON returns a body nested 10,000 deep, of one of three shapes, none
// of which is a valid phone, so that each must be refused with a 400.
func deepJSON(shape int) ([]byte, string) {
	const depth = 10000
	var b bytes.Buffer
	switch shape {
	case 0:
		b.WriteString(`{"type":"MOBILE","nested":`)
		b.WriteString(strings.Repeat("[", depth))
		b.WriteString(strings.Repeat("]", depth))
		b.WriteString("}")
		return b.Bytes(), "an object with an unknown field of 10,000 nested arrays"
	case 1:
		b.WriteString(strings.Repeat("[", depth))
		b.WriteString(strings.Repeat("]", depth))
		return b.Bytes(), "10,000 nested arrays"
	default:
		b.WriteString(`{"number":`)
		b.WriteString(strings.Repeat(`{"a":`, depth))
		b.WriteString("1")
		b.WriteString(strings.Repeat("}", depth))
		b.WriteString(`,"type":"MOBILE"}`)
		return b.Bytes(), "a number of 10,000 nested objects"
	}
}
