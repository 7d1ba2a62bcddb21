// Package eventtest checks events against the event contract,
// api/asyncapi.yaml, with a JSON Schema validator. It is the one place
// where the tests that read phonesd's events hand them over, from the
// events file (CheckLine) or from JetStream (CheckMessage, which
// natstest's Messages calls), so that every event a test makes is checked
// against the document consumers read.
//
// Every object of the document's schemas is checked closed: a field, or
// a header, that phonesd sends and the document does not list fails,
// although the published schemas leave objects open for the consumers'
// sake (the document's versioning rules say why).
//
// With PHONES_TEST_EVENTS_CHECKED naming a file, each event checked for
// the first time in a test binary adds a line to it: its event_id, its
// event_type and where it was read (file or jetstream). .ci/run counts
// them.
package eventtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/ogen-go/ogen/ogenregex"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/phonesd/phonesd/api"
)

// LogVar names the variable that names the file of checked events.
const LogVar = "PHONES_TEST_EVENTS_CHECKED"

// docURL names the document among the validator's resources, and in its
// errors.
const docURL = "urn:phonesd:asyncapi"

// Contract is the event contract compiled for checking.
type Contract struct {
	// file holds the messages of the events file's channel by the
	// event_type their payloads take: a line's says which it is.
	file     map[string]message
	channels []channel // the JetStream channels
	// domain is the subject token of the contract's events: a message on
	// a subject holding it, and on no channel, is an undocumented event.
	domain string
	log    string // LogVar's file; "" for none

	mu      sync.Mutex
	checked map[string]bool // what passed already: each is checked once
}

type channel struct {
	name     string
	subject  *regexp.Regexp
	messages []message
}

type message struct {
	name      string
	eventType string             // the const of its payload's event_type
	headers   *jsonschema.Schema // nil for none
	payload   *jsonschema.Schema
}

// shared is the contract every test of a binary checks with, compiled once:
// readers call it in their polling loops.
var shared = sync.OnceValues(func() (*Contract, error) {
	doc, err := api.AsyncAPIJSON()
	if err != nil {
		return nil, err
	}
	return Load(doc, os.Getenv(LogVar))
})

// CheckLine fails t unless line, a line of an events file, is one of the
// messages of the contract's events file channel.
func CheckLine(t testing.TB, line []byte) {
	t.Helper()
	c, err := shared()
	if err != nil {
		t.Fatalf("event contract: %v", err)
	}
	if err := c.Line(line); err != nil {
		t.Fatalf("an event of the events file breaks the event contract, api/asyncapi.yaml: %v\n%s", err, line)
	}
}

// ReadFile returns the lines of the events file at path, without their
// newlines, each checked with CheckLine; none for an empty file. It fails t
// when the file cannot be read or its last line has no newline, which a
// sink's Publish never leaves behind.
func ReadFile(t testing.TB, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	if len(b) == 0 {
		return nil
	}
	if b[len(b)-1] != '\n' {
		t.Fatalf("%s: got no final newline; want one", path)
	}
	lines := strings.Split(string(b[:len(b)-1]), "\n")
	for _, l := range lines {
		CheckLine(t, []byte(l))
	}
	return lines
}

// CheckMessage fails t unless a JetStream message, read from a stream with
// its headers, is a message of the contract's channel for its subject.
// A message on a subject of no channel passes when the subject is not of
// the contract's domain: a test's own message, not an event.
func CheckMessage(t testing.TB, subject string, header map[string][]string, data []byte) {
	t.Helper()
	c, err := shared()
	if err != nil {
		t.Fatalf("event contract: %v", err)
	}
	if err := c.Message(subject, header, data); err != nil {
		t.Fatalf("a message on %s breaks the event contract, api/asyncapi.yaml: %v\nheaders %v\n%s", subject, err, header, data)
	}
}

// Load compiles the event contract doc (AsyncAPI as JSON) for checking,
// with every object of its schemas closed; log names the file of checked
// events, "" for none. It returns an error when the document is not one
// it can read: an AsyncAPI 3 document whose channels are on servers of
// protocol nats or file, their messages' headers and payloads references
// to its schemas.
func Load(doc []byte, log string) (*Contract, error) {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		return nil, fmt.Errorf("read the event contract: %w", err)
	}
	var d struct {
		Servers  map[string]struct{ Protocol string }
		Channels map[string]struct {
			Address  *string
			Servers  []ref
			Messages map[string]ref
		}
		Components struct {
			Messages map[string]struct {
				Headers *ref
				Payload ref
			}
		}
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		return nil, fmt.Errorf("read the event contract: %w", err)
	}
	root, _ := v.(map[string]any)
	components, _ := root["components"].(map[string]any)
	schemas, _ := components["schemas"].(map[string]any)
	for _, s := range schemas {
		closeObjects(s)
	}

	comp := jsonschema.NewCompiler()
	// AsyncAPI 3.0's schemas are a superset of draft-07, whose formats
	// (uuid, date-time) this validator asserts; patterns are ECMA 262, as
	// ogen reads openapi.json's.
	comp.DefaultDraft(jsonschema.Draft7)
	comp.AssertFormat()
	comp.UseRegexpEngine(ecmaRegexp)
	if err := comp.AddResource(docURL, v); err != nil {
		return nil, fmt.Errorf("event contract: %w", err)
	}
	schemaName := func(r ref) (string, error) {
		name, ok := strings.CutPrefix(r.Ref, "#/components/schemas/")
		if !ok {
			return "", fmt.Errorf("%q is not a schema of the document", r.Ref)
		}
		return name, nil
	}
	compile := func(r ref) (*jsonschema.Schema, error) {
		name, err := schemaName(r)
		if err != nil {
			return nil, err
		}
		return comp.Compile(docURL + "#/components/schemas/" + name)
	}

	c := &Contract{file: map[string]message{}, log: log, checked: map[string]bool{}}
	for _, name := range slices.Sorted(maps.Keys(d.Channels)) {
		ch := d.Channels[name]
		var msgs []message
		for _, mname := range slices.Sorted(maps.Keys(ch.Messages)) {
			mref := ch.Messages[mname]
			m, ok := d.Components.Messages[strings.TrimPrefix(mref.Ref, "#/components/messages/")]
			if !ok {
				return nil, fmt.Errorf("channel %s: no message %s", name, mref.Ref)
			}
			msg := message{name: mname}
			if msg.payload, err = compile(m.Payload); err != nil {
				return nil, fmt.Errorf("channel %s, message %s, payload: %w", name, mname, err)
			}
			payloadName, _ := schemaName(m.Payload)
			payload, _ := schemas[payloadName].(map[string]any)
			props, _ := payload["properties"].(map[string]any)
			eventType, _ := props["event_type"].(map[string]any)
			msg.eventType, _ = eventType["const"].(string)
			if m.Headers != nil {
				if msg.headers, err = compile(*m.Headers); err != nil {
					return nil, fmt.Errorf("channel %s, message %s, headers: %w", name, mname, err)
				}
			}
			msgs = append(msgs, msg)
		}
		if len(ch.Servers) != 1 {
			return nil, fmt.Errorf("channel %s: on %d servers; want one", name, len(ch.Servers))
		}
		switch protocol := d.Servers[strings.TrimPrefix(ch.Servers[0].Ref, "#/servers/")].Protocol; protocol {
		case "file":
			for _, m := range msgs {
				if _, dup := c.file[m.eventType]; dup || m.eventType == "" {
					return nil, fmt.Errorf("channel %s, message %s: event_type %q does not tell it apart", name, m.name, m.eventType)
				}
				c.file[m.eventType] = m
			}
		case "nats":
			if ch.Address == nil {
				return nil, fmt.Errorf("channel %s: no subject", name)
			}
			re, domain, err := subjectPattern(*ch.Address)
			if err != nil {
				return nil, fmt.Errorf("channel %s: %w", name, err)
			}
			c.domain = domain
			c.channels = append(c.channels, channel{name: name, subject: re, messages: msgs})
		default:
			return nil, fmt.Errorf("channel %s: server protocol %q; want nats or file", name, protocol)
		}
	}
	if len(c.file) == 0 || len(c.channels) == 0 {
		return nil, errors.New("event contract: want channels on JetStream and on the events file")
	}
	return c, nil
}

type ref struct {
	Ref string `json:"$ref"`
}

// closeObjects forbids, in schema s and every schema in it, the properties
// an object schema does not list.
func closeObjects(s any) {
	m, ok := s.(map[string]any)
	if !ok {
		return
	}
	if props, ok := m["properties"].(map[string]any); ok {
		if _, set := m["additionalProperties"]; !set {
			m["additionalProperties"] = false
		}
		for _, p := range props {
			closeObjects(p)
		}
	}
	closeObjects(m["items"])
	if all, ok := m["allOf"].([]any); ok {
		for _, a := range all {
			closeObjects(a)
		}
	}
}

// subjectPattern turns a channel's address, such as
// {prefix}.audit.phone_creation-1, into a pattern of the subjects it
// names, a parameter standing for one or more subject tokens; it returns
// the token after the parameter too, the events' domain.
func subjectPattern(address string) (*regexp.Regexp, string, error) {
	param := regexp.MustCompile(`\{[^}]+\}`)
	const tokens = `[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*`
	var b strings.Builder
	last := 0
	for _, loc := range param.FindAllStringIndex(address, -1) {
		b.WriteString(regexp.QuoteMeta(address[last:loc[0]]))
		b.WriteString(tokens)
		last = loc[1]
	}
	b.WriteString(regexp.QuoteMeta(address[last:]))
	re, err := regexp.Compile("^" + b.String() + "$")
	if err != nil {
		return nil, "", fmt.Errorf("address %s: %w", address, err)
	}
	rest := param.ReplaceAllString(address, "")
	domain, _, _ := strings.Cut(strings.TrimPrefix(rest, "."), ".")
	return re, domain, nil
}

// Line returns an error unless line is the events file's message of its
// event_type.
func (c *Contract) Line(line []byte) error {
	key := "file\x00" + string(line)
	if c.passed(key) {
		return nil
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(line))
	if err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	ev, _ := v.(map[string]any)
	eventType, _ := ev["event_type"].(string)
	m, ok := c.file[eventType]
	if !ok {
		return fmt.Errorf("event_type %q: no message of the events file has it", eventType)
	}
	if err := m.payload.Validate(v); err != nil {
		return fmt.Errorf("as %s: %w", m.name, err)
	}
	return c.pass(key, v, "file")
}

// Message returns an error unless a JetStream message on subject, with
// header, is a message of the channel of its subject: its headers and
// payload as the message's schemas say, and the header Nats-Msg-Id the
// payload's event_id. A subject of no channel is not an error unless it
// holds the contract's domain as a token.
func (c *Contract) Message(subject string, header map[string][]string, data []byte) error {
	var ch *channel
	for i := range c.channels {
		if c.channels[i].subject.MatchString(subject) {
			ch = &c.channels[i]
		}
	}
	if ch == nil {
		if slices.Contains(strings.Split(subject, "."), c.domain) {
			return fmt.Errorf("an event on a subject of no channel of the contract")
		}
		return nil
	}
	headers := map[string]any{}
	for name, values := range header {
		if len(values) != 1 {
			return fmt.Errorf("header %s sent %d times; want once", name, len(values))
		}
		headers[name] = values[0]
	}
	key := "jetstream\x00" + subject + "\x00" + fmt.Sprint(headers) + "\x00" + string(data)
	if c.passed(key) {
		return nil
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("payload not JSON: %w", err)
	}
	var errs []error
	for _, m := range ch.messages {
		err := m.payload.Validate(v)
		if err == nil && m.headers != nil {
			err = m.headers.Validate(headers)
		}
		if err == nil {
			if id, _ := v.(map[string]any)["event_id"]; headers["Nats-Msg-Id"] != id {
				err = fmt.Errorf("Nats-Msg-Id %v; want the payload's event_id %v", headers["Nats-Msg-Id"], id)
			}
		}
		if err == nil {
			return c.pass(key, v, "jetstream")
		}
		errs = append(errs, fmt.Errorf("as %s of channel %s: %w", m.name, ch.name, err))
	}
	return errors.Join(errs...)
}

// passed reports whether what key names passed already.
func (c *Contract) passed(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.checked[key]
}

// pass records that the event v, read from where, passed, and adds it to
// the log.
func (c *Contract) pass(key string, v any, where string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.checked[key] {
		return nil
	}
	c.checked[key] = true
	if c.log == "" {
		return nil
	}
	ev, _ := v.(map[string]any)
	f, err := os.OpenFile(c.log, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("%s: %w", LogVar, err)
	}
	_, err = fmt.Fprintf(f, "%v %v %s\n", ev["event_id"], ev["event_type"], where)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("%s: %w", LogVar, err)
	}
	return nil
}

// ecmaRegexp compiles the document's patterns as ogen compiles
// openapi.json's: ECMA 262, in Go's engine where the pattern allows it.
func ecmaRegexp(pattern string) (jsonschema.Regexp, error) {
	re, err := ogenregex.Compile(pattern)
	if err != nil {
		return nil, err
	}
	return matcher{re}, nil
}

type matcher struct{ ogenregex.Regexp }

// MatchString reports whether s matches; a pattern that cannot be run on s
// (regexp2's time limit) does not match.
func (m matcher) MatchString(s string) bool {
	ok, err := m.Regexp.MatchString(s)
	return ok && err == nil
}
