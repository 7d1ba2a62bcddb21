// Package jetstream publishes outbox events to a NATS JetStream stream.
package jetstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/phonesd/phonesd/internal/phone"
)

// Defaults of Config.
const (
	DefaultDuplicateWindow = 10 * time.Minute
	DefaultReplicas        = 1
	DefaultPublishTimeout  = 10 * time.Second
	DefaultReconnectWait   = time.Second
)

// MaxReplicas is the most replicas JetStream gives a stream: a cluster's
// Raft group of five servers.
const MaxReplicas = 5

// Connection health: a link that died without a reset (a partition, a
// blackholed route) is noticed after about pingInterval*(maxPingsOut+1), not
// after the operating system's TCP timeouts.
const (
	pingInterval = 10 * time.Second
	maxPingsOut  = 2
)

// streamRecheckTimeout bounds the check of the stream before a publish
// when JetStream stopped answering for it; a healthy server answers in
// milliseconds.
const streamRecheckTimeout = 2 * time.Second

// ErrStream means the stream cannot take our events as configured: it exists
// and its subjects do not cover ours, or the server refused to create it.
// Only an operator can fix it, since an existing stream is never changed.
var ErrStream = errors.New("unusable stream")

// errCodeNoPeers is JetStream's error code for a stream that cannot be
// placed on as many servers as its replicas ("no suitable peers for
// placement"), which nats.go names no constant for.
const errCodeNoPeers natsjs.ErrorCode = 10005

// ErrNoTLS means the server offers no TLS to a connection that requires it.
var ErrNoTLS = errors.New("the server offers no TLS")

// errNotConnected means the connection is down and being re-established.
var errNotConnected = errors.New("not connected")

// Config is what NewSink needs; a zero duration takes its default.
type Config struct {
	// URL names the server: nats://host:port or tls://host:port, with
	// user:password@ allowed, or several such URLs separated by commas.
	URL string
	// CredsFile is a NATS credentials file (user JWT and seed); optional.
	CredsFile string
	// SubjectPrefix starts every subject: <prefix>.<domain>.<event type>.
	SubjectPrefix string
	// Stream is the stream that must hold the events, created when missing.
	Stream string
	// DuplicateWindow is the duplicate window of a stream created here.
	DuplicateWindow time.Duration
	// Replicas is the replica count of a stream created here:
	// DefaultReplicas (one server), or 3 or 5 on a cluster, so that the
	// stream survives the loss of a server.
	Replicas int
	// PublishTimeout bounds the wait for one batch's acknowledgements, and
	// each check of the stream.
	PublishTimeout time.Duration
	// ReconnectWait is the pause between attempts to reach the server.
	ReconnectWait time.Duration
	// RequireTLS makes every connection refuse a server that offers no
	// TLS, whatever the URL's scheme, so that credentials and events never
	// cross the network in clear text; tls:// URLs require it anyway.
	RequireTLS bool
	Logger     *slog.Logger // default discards
}

// Sink publishes events to JetStream, one message per event on
// <prefix>.<domain>.<event type>, with the event's payload as the body and
// its event_id as Nats-Msg-Id. It is safe for sequential use by one relay.
type Sink struct {
	nc     *nats.Conn
	js     natsjs.JetStream
	cfg    Config
	log    *slog.Logger
	server string // the URL without credentials, for logs and errors
	// streamOK records that the stream was found or created and covers our
	// subjects; it is checked again after JetStream stops answering for it,
	// since the stream may have been deleted meanwhile.
	streamOK bool
	// closing is set by Close: the disconnection that follows is no loss.
	closing *atomic.Bool
	// closed is closed by the connection's last callback.
	closed chan struct{}
}

// NewSink connects to the server and makes sure the stream exists. A server
// that cannot be reached does not stop it: the connection keeps retrying,
// Publish fails until it succeeds, and the stream is checked before the
// first publish. It returns an error for an invalid Config, an unreadable
// credentials file, credentials the server rejects, with RequireTLS a
// server that offers no TLS (wrapping ErrNoTLS), and, when the server
// answers, a stream wrapping ErrStream.
func NewSink(ctx context.Context, cfg Config) (*Sink, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	server := Redact(cfg.URL)
	log = log.With("nats", server)

	opts := dialOptions(cfg)
	closing, closed := &atomic.Bool{}, make(chan struct{})
	opts = append(opts,
		nats.MaxReconnects(-1),
		nats.ReconnectWait(cfg.ReconnectWait),
		// Without a reconnect buffer, a publish while the connection is down
		// fails at once instead of queueing behind the outage: the relay
		// backs off and the events wait in the outbox, their only queue.
		nats.ReconnectBufSize(-1),
		nats.PingInterval(pingInterval),
		nats.MaxPingsOutstanding(maxPingsOut),
		// Credentials rotated on the server must not end the retries.
		nats.IgnoreAuthErrorAbort(),
		nats.ReconnectHandler(func(*nats.Conn) { log.Info("NATS reconnected") }),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			// The client reports its own Close as a disconnection too.
			if closing.Load() {
				return
			}
			// A server that closes the connection for good (an error
			// of its own) is reported with no error: its last one says
			// why.
			if err == nil {
				err = nc.LastError()
			}
			log.Warn("NATS connection lost; events wait in the outbox until it is back", "err", err)
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			log.Warn("NATS error", "err", err)
		}),
		// The last callback of a closed connection: Close waits for it.
		nats.ClosedHandler(func(*nats.Conn) { close(closed) }),
	)

	nc, err := nats.Connect(cfg.URL, opts...)
	if err != nil {
		if errors.Is(err, nats.ErrSecureConnWanted) || authError(err) {
			return nil, connectError(server, err)
		}
		// Anything else may be an outage, which must not stop creates:
		// connect again, this time leaving the client to retry forever;
		// the client says when it has connected, now or later.
		log.Warn("NATS unreachable at start; events wait in the outbox until it answers", "err", err)
		nc, err = nats.Connect(cfg.URL, append(opts, nats.RetryOnFailedConnect(true),
			nats.ConnectHandler(func(*nats.Conn) { log.Info("NATS connected") }))...)
		if err != nil {
			return nil, connectError(server, err)
		}
	} else {
		log.Info("NATS connected")
	}
	js, err := natsjs.New(nc, natsjs.WithPublishAsyncTimeout(cfg.PublishTimeout))
	s := &Sink{nc: nc, js: js, cfg: cfg, log: log, server: server, closing: closing, closed: closed}
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("JetStream on %s: %w", server, err)
	}
	if nc.IsConnected() {
		if err := s.ensureStream(ctx); err != nil {
			if errors.Is(err, ErrStream) {
				s.Close()
				return nil, err
			}
			log.Warn("JetStream stream not checked yet; checked again before the first publish", "stream", cfg.Stream, "err", err)
		}
	}
	return s, nil
}

// ConfigError is an invalid setting of a Config. Field names it as Config
// does (URL, CredsFile, SubjectPrefix, Stream), so that a caller can name
// the setting of its own it came from.
type ConfigError struct {
	Field string
	Err   error
}

func (e *ConfigError) Error() string { return e.Err.Error() }

func (e *ConfigError) Unwrap() error { return e.Err }

// Check returns a *ConfigError for the first setting of cfg that no server
// would take: a URL that is not one or more nats:// or tls:// server URLs,
// a credentials file without a user JWT and seed, a subject prefix or
// stream name JetStream refuses. NewSink and Probe check with it; a
// configuration read long before them may call it to fail at once.
func (cfg Config) Check() error {
	for part := range strings.SplitSeq(cfg.URL, ",") {
		u, err := url.Parse(strings.TrimSpace(part))
		if err != nil || (u.Scheme != "nats" && u.Scheme != "tls") || u.Hostname() == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
			// The value is not quoted: it may hold a password.
			return &ConfigError{Field: "URL", Err: errors.New("want nats://host:port or tls://host:port (user:password@ allowed), or several separated by commas")}
		}
	}
	if cfg.CredsFile != "" {
		if err := CheckCreds(cfg.CredsFile); err != nil {
			return &ConfigError{Field: "CredsFile", Err: err}
		}
	}
	if err := CheckSubjectPrefix(cfg.SubjectPrefix); err != nil {
		return &ConfigError{Field: "SubjectPrefix", Err: err}
	}
	if err := CheckStreamName(cfg.Stream); err != nil {
		return &ConfigError{Field: "Stream", Err: err}
	}
	return nil
}

// withDefaults checks cfg and returns it with a default for every zero
// duration and count.
func (cfg Config) withDefaults() (Config, error) {
	if err := cfg.Check(); err != nil {
		return cfg, err
	}
	if cfg.DuplicateWindow <= 0 {
		cfg.DuplicateWindow = DefaultDuplicateWindow
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = DefaultReplicas
	}
	if cfg.PublishTimeout <= 0 {
		cfg.PublishTimeout = DefaultPublishTimeout
	}
	if cfg.ReconnectWait <= 0 {
		cfg.ReconnectWait = DefaultReconnectWait
	}
	return cfg, nil
}

// dialOptions are what a connection of cfg shows the server, the same for
// NewSink and Probe: its name, its credentials, and with RequireTLS its
// refusal of a server without TLS.
func dialOptions(cfg Config) []nats.Option {
	opts := []nats.Option{nats.Name("phonesd")}
	if cfg.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	}
	if cfg.RequireTLS {
		opts = append(opts, nats.Secure())
	}
	if !cfg.RequireTLS && !tlsURL(cfg.URL) {
		// nats.go adds the servers a cluster advertises to its pool, with
		// the configured URL's user and password copied onto them, and
		// would send those in clear text to an address nobody configured.
		// Without TLS only the configured servers are used.
		opts = append(opts, nats.IgnoreDiscoveredServers())
	}
	return opts
}

// connectError is the error of a connection to server that failed with err.
func connectError(server string, err error) error {
	if errors.Is(err, nats.ErrSecureConnWanted) {
		return fmt.Errorf("connect to %s: %w: %w", server, ErrNoTLS, err)
	}
	return fmt.Errorf("connect to %s: %w", server, err)
}

// Probe connects to the server once as NewSink would, without retrying,
// and looks for the stream without creating it. It returns what it found,
// for a person to read, or NewSink's errors, and one for a server that
// cannot be reached or has no JetStream.
func Probe(ctx context.Context, cfg Config) (string, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return "", err
	}
	opts := dialOptions(cfg)
	server := Redact(cfg.URL)
	nc, err := nats.Connect(cfg.URL, opts...)
	if err != nil {
		return "", connectError(server, err)
	}
	defer nc.Close()
	js, err := natsjs.New(nc)
	if err != nil {
		return "", fmt.Errorf("JetStream on %s: %w", server, err)
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.PublishTimeout)
	defer cancel()
	st, err := js.Stream(ctx, cfg.Stream)
	if errors.Is(err, natsjs.ErrStreamNotFound) {
		return fmt.Sprintf("no stream %s yet: phonesd creates it", cfg.Stream), nil
	}
	if err != nil {
		return "", fmt.Errorf("stream %s on %s: %w", cfg.Stream, server, err)
	}
	if err := covering(cfg, st.CachedInfo()); err != nil {
		return "", err
	}
	return fmt.Sprintf("stream %s holds %s.>", cfg.Stream, cfg.SubjectPrefix), nil
}

// Publish publishes the events in order and returns once JetStream has
// acknowledged every one of them. It returns an error when the connection
// is down, the stream is unusable, an event's subject would be invalid, any
// event is refused or unacknowledged within PublishTimeout, or ctx ends; the
// relay then publishes the whole batch again.
func (s *Sink) Publish(ctx context.Context, events []phone.Event) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("publish to NATS: %w", err)
	}
	if len(events) == 0 {
		return nil
	}
	if !s.nc.IsConnected() {
		return fmt.Errorf("publish to NATS %s: %w", s.server, errNotConnected)
	}
	if !s.streamOK {
		// Most often JetStream stopped answering for the stream because
		// its cluster is electing a new leader, and nothing answers until
		// it has one: a short check lets the relay's backoff poll for the
		// leader instead of waiting out a whole publish timeout.
		checkCtx, cancel := context.WithTimeout(ctx, streamRecheckTimeout)
		err := s.ensureStream(checkCtx)
		cancel()
		if err != nil {
			if errors.Is(err, ErrStream) {
				// The relay logs only the first failure of a streak; this
				// one needs an operator, so it is logged at every attempt.
				s.log.Error("events cannot be published; they wait in the outbox", "err", err)
			}
			return err
		}
	}
	// Every subject is checked before anything is sent, so that a bad event
	// stops its batch before the events ahead of it are published.
	subjects := make([]string, len(events))
	for i, ev := range events {
		subj, err := s.subject(ev)
		if err != nil {
			return err
		}
		subjects[i] = subj
	}

	ctx, cancel := context.WithTimeout(ctx, s.cfg.PublishTimeout)
	defer cancel()
	// The whole batch is sent before any acknowledgement is awaited, and
	// this keeps outbox order. The messages leave in order on one
	// connection, a single TCP stream, and the server stores the messages
	// of one connection in the order they arrive; a connection that breaks
	// loses a suffix of the batch, never a message in the middle. Nothing
	// counts as sent until every message is acknowledged, and the retry
	// sends the whole batch again from its first event: the prefix the
	// stream already holds is dropped as duplicates by Nats-Msg-Id, and the
	// rest is stored after it. The client's own resend on "no responders"
	// is turned off, since it would send one message again behind those
	// that followed it. What remains: a message the server refuses on its
	// own (one over the stream's size limit, or caught by a cluster's leader
	// election) while it stores those behind it. That event stays unsent,
	// the relay retries it, and the stream may then hold it after later
	// ones; it is never skipped.
	acks := make([]natsjs.PubAckFuture, len(events))
	for i, ev := range events {
		msg := &nats.Msg{Subject: subjects[i], Data: ev.Payload}
		if ev.TraceParent != "" {
			// The trace of the change that wrote the event, for the
			// consumers that continue it (W3C Trace Context).
			msg.Header = nats.Header{"traceparent": []string{ev.TraceParent}}
		}
		ack, err := s.js.PublishMsgAsync(msg,
			natsjs.WithMsgID(ev.ID),
			natsjs.WithExpectStream(s.cfg.Stream),
			natsjs.WithRetryAttempts(0),
		)
		if err != nil {
			return fmt.Errorf("publish event seq %d to %s: %w", ev.Seq, subjects[i], err)
		}
		acks[i] = ack
	}
	duplicates := 0
	for i, ack := range acks {
		select {
		case pa := <-ack.Ok():
			if pa.Duplicate {
				duplicates++
			}
		case err := <-ack.Err():
			if errors.Is(err, natsjs.ErrNoStreamResponse) {
				s.streamOK = false
			}
			return fmt.Errorf("publish event seq %d to %s: %w", events[i].Seq, subjects[i], err)
		case <-ctx.Done():
			return fmt.Errorf("publish event seq %d to %s: no acknowledgement: %w", events[i].Seq, subjects[i], ctx.Err())
		}
	}
	if duplicates > 0 {
		// A retry after a lost acknowledgement or a crash: JetStream had
		// these already and stored them once.
		s.log.Info("JetStream dropped events it already held", "duplicates", duplicates, "batch", len(events), "stream", s.cfg.Stream)
	}
	return nil
}

// closeWait bounds how long Close waits for the connection's callbacks,
// which only log.
const closeWait = 2 * time.Second

// Close closes the connection, and returns once its callbacks have run, so
// that nothing is logged for it afterwards.
func (s *Sink) Close() error {
	s.closing.Store(true)
	s.nc.Close()
	select {
	case <-s.closed:
	case <-time.After(closeWait):
	}
	return nil
}

// subject returns <prefix>.<domain>.<event type> for ev, or an error when
// its domain or type is not a single subject token.
func (s *Sink) subject(ev phone.Event) (string, error) {
	for _, tok := range []string{ev.Domain, ev.Type} {
		if !validToken(tok) {
			return "", fmt.Errorf("event seq %d: %q is not a subject token", ev.Seq, tok)
		}
	}
	return s.cfg.SubjectPrefix + "." + ev.Domain + "." + ev.Type, nil
}

// ensureStream finds the stream or creates it, and checks that it covers
// our subjects. An existing stream is never updated: it may be shared, and
// its limits are its owner's choice.
func (s *Sink) ensureStream(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.PublishTimeout)
	defer cancel()
	want := s.cfg.SubjectPrefix + ".>"
	created := false
	st, err := s.js.Stream(ctx, s.cfg.Stream)
	if errors.Is(err, natsjs.ErrStreamNotFound) {
		st, err = s.js.CreateStream(ctx, natsjs.StreamConfig{
			Name:        s.cfg.Stream,
			Description: "Accounts API events",
			Subjects:    []string{want},
			Storage:     natsjs.FileStorage,
			Duplicates:  s.cfg.DuplicateWindow,
			Replicas:    s.cfg.Replicas,
		})
		var apiErr *natsjs.APIError
		switch {
		case err == nil:
			s.log.Info("JetStream stream created", "stream", s.cfg.Stream, "subjects", want, "duplicate_window", s.cfg.DuplicateWindow.String(), "replicas", s.cfg.Replicas)
			created = true
		case errors.Is(err, natsjs.ErrStreamNameAlreadyInUse):
			// Another replica created it first: check it as found.
			st, err = s.js.Stream(ctx, s.cfg.Stream)
		case errors.As(err, &apiErr) && apiErr.Code == 400 && apiErr.ErrorCode != errCodeNoPeers:
			// Refused as asked, as when another stream already holds
			// these subjects: no retry will change that. Too few servers
			// for the replicas is another matter: a cluster starting, or
			// one that lost a server, has them again later.
			return fmt.Errorf("%w: create stream %s with subjects %s: %w", ErrStream, s.cfg.Stream, want, err)
		}
	}
	if err != nil {
		return fmt.Errorf("stream %s: %w", s.cfg.Stream, err)
	}
	info := st.CachedInfo()
	if err := covering(s.cfg, info); err != nil {
		return err
	}
	if !created {
		s.reportReplicas(info)
	}
	if info.Config.Duplicates < s.cfg.DuplicateWindow {
		s.log.Warn("the stream's duplicate window is shorter than configured: a retry later than that is stored twice",
			"stream", s.cfg.Stream, "stream_window", info.Config.Duplicates.String(), "configured", s.cfg.DuplicateWindow.String())
	}
	s.streamOK = true
	return nil
}

// reportReplicas logs the replica count of a stream found at start, with
// its cluster's leader: what the stream survives is its owner's choice,
// which phonesd reports but never changes.
func (s *Sink) reportReplicas(info *natsjs.StreamInfo) {
	leader := ""
	if info.Cluster != nil {
		leader = info.Cluster.Leader
	}
	s.log.Info("JetStream stream found", "stream", s.cfg.Stream, "replicas", info.Config.Replicas, "leader", leader)
	if info.Config.Replicas < s.cfg.Replicas {
		s.log.Warn("the stream has fewer replicas than configured; an existing stream is never changed: update it to survive the loss of a server",
			"stream", s.cfg.Stream, "stream_replicas", info.Config.Replicas, "configured", s.cfg.Replicas)
	}
}

// covering returns an error wrapping ErrStream unless the stream of info
// holds every subject of cfg's prefix.
func covering(cfg Config, info *natsjs.StreamInfo) error {
	if !covers(info.Config.Subjects, cfg.SubjectPrefix) {
		want := cfg.SubjectPrefix + ".>"
		return fmt.Errorf("%w: stream %s has subjects %v, which do not cover %s; an existing stream is never changed: add %s to it, or choose another stream or subject prefix",
			ErrStream, cfg.Stream, info.Config.Subjects, want, want)
	}
	return nil
}

// covers reports whether one of subjects matches every subject that starts
// with prefix and one or more tokens after it, that is prefix + ".>".
func covers(subjects []string, prefix string) bool {
	want := strings.Split(prefix, ".")
	for _, subj := range subjects {
		toks := strings.Split(subj, ".")
		for i, tok := range toks {
			if tok == ">" {
				return true
			}
			// Past the prefix the subject has one or more arbitrary
			// tokens: only ">" matches them all.
			if i >= len(want) || (tok != "*" && tok != want[i]) {
				break
			}
		}
	}
	return false
}

// CheckSubjectPrefix returns an error unless p is one or more subject
// tokens separated by dots, without wildcards.
func CheckSubjectPrefix(p string) error {
	for tok := range strings.SplitSeq(p, ".") {
		if !validToken(tok) {
			return fmt.Errorf("subject prefix %q: want tokens of letters, digits, '-' or '_' separated by dots, such as accounts", p)
		}
	}
	return nil
}

// CheckStreamName returns an error unless n is a valid JetStream stream name.
func CheckStreamName(n string) error {
	if n == "" || len(n) > 255 || strings.ContainsAny(n, ".*>/\\ \t\r\n") {
		return fmt.Errorf("stream name %q: want a non-empty name without '.', '*', '>', slashes or spaces, such as ACCOUNTS_EVENTS", n)
	}
	return nil
}

// validToken reports whether tok is one subject token that is safe to
// build from: not empty, no wildcard, no separator, no space.
func validToken(tok string) bool {
	if tok == "" {
		return false
	}
	for _, r := range tok {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_'
		if !ok {
			return false
		}
	}
	return true
}

// tlsURL reports whether url, a comma-separated list of server URLs, names
// a tls:// server: nats.go then requires TLS of every server it connects to.
func tlsURL(url string) bool {
	for part := range strings.SplitSeq(url, ",") {
		if strings.HasPrefix(strings.TrimSpace(part), "tls://") {
			return true
		}
	}
	return false
}

// Redact returns url, a comma-separated list of server URLs, without the
// user information of any of them, for logs and errors.
func Redact(url string) string {
	parts := strings.Split(url, ",")
	for i, p := range parts {
		p = strings.TrimSpace(p)
		scheme, rest, ok := strings.Cut(p, "://")
		if !ok {
			scheme, rest = "", p
		}
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			rest = rest[at+1:]
		}
		if scheme != "" {
			rest = scheme + "://" + rest
		}
		parts[i] = rest
	}
	return strings.Join(parts, ",")
}

// CheckCreds returns an error unless path is a readable credentials file
// with a user JWT and a user seed; the error never holds the file's content.
func CheckCreds(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("credentials file: %w", err)
	}
	if jwt, _ := nkeys.ParseDecoratedJWT(b); strings.Count(jwt, ".") != 2 || strings.ContainsAny(jwt, " \n") {
		return fmt.Errorf("credentials file %s: no user JWT found", path)
	}
	kp, err := nkeys.ParseDecoratedUserNKey(b)
	if err != nil {
		return fmt.Errorf("credentials file %s: no user seed found: %w", path, err)
	}
	kp.Wipe()
	return nil
}

// authError reports whether err is the server refusing our credentials.
func authError(err error) bool {
	return errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) ||
		errors.Is(err, nats.ErrAuthRevoked) || errors.Is(err, nats.ErrAccountAuthExpired)
}
