package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// eventsTag names the section of /docs that shows the events.
const eventsTag = "Events"

// docsDocument returns the document /docs renders: the contract, spec,
// with the event contract's schemas added to its own and a tag whose
// description shows each channel, its headers and its payload, generated
// from events (asyncapi.json); spec alone when events is nil. Both are
// decoded only as deep as they are changed, so that the operations and
// schemas keep their order on the page. It returns an error when either
// document is not what it should be, or when a schema of the events has
// the name of one of the contract's.
func docsDocument(spec, events []byte) ([]byte, error) {
	if events == nil {
		return spec, nil
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(spec, &doc); err != nil {
		return nil, fmt.Errorf("openapi.json: %w", err)
	}
	var tags []json.RawMessage
	if err := json.Unmarshal(doc["tags"], &tags); err != nil {
		return nil, fmt.Errorf("openapi.json: tags: %w", err)
	}
	var components, schemas map[string]json.RawMessage
	if err := json.Unmarshal(doc["components"], &components); err != nil {
		return nil, fmt.Errorf("openapi.json: components: %w", err)
	}
	if err := json.Unmarshal(components["schemas"], &schemas); err != nil {
		return nil, fmt.Errorf("openapi.json: components.schemas: %w", err)
	}

	var ev eventDoc
	if err := json.Unmarshal(events, &ev); err != nil {
		return nil, fmt.Errorf("asyncapi.json: %w", err)
	}
	for name, s := range ev.Components.Schemas {
		if _, taken := schemas[name]; taken {
			return nil, fmt.Errorf("asyncapi.json: schema %s has the name of one of openapi.json's: rename it", name)
		}
		schemas[name] = s
	}
	md, err := ev.markdown()
	if err != nil {
		return nil, fmt.Errorf("asyncapi.json: %w", err)
	}
	tag, err := json.Marshal(struct {
		Name        string `json:"name"`
		Description string `json:"description"`
	}{eventsTag, md})
	if err != nil {
		return nil, err
	}
	tags = append(tags, tag)

	if components["schemas"], err = json.Marshal(schemas); err != nil {
		return nil, err
	}
	if doc["components"], err = json.Marshal(components); err != nil {
		return nil, err
	}
	if doc["tags"], err = json.Marshal(tags); err != nil {
		return nil, err
	}
	return json.Marshal(doc)
}

// eventDoc is what /docs shows of the event contract.
type eventDoc struct {
	Info struct {
		Description string `json:"description"`
	} `json:"info"`
	// Servers and Channels are kept raw, to be read in the document's order.
	Servers    json.RawMessage `json:"servers"`
	Channels   json.RawMessage `json:"channels"`
	Components struct {
		Messages map[string]struct {
			Title   string `json:"title"`
			Summary string `json:"summary"`
			Headers *ref   `json:"headers"`
			Payload ref    `json:"payload"`
		} `json:"messages"`
		Schemas map[string]json.RawMessage `json:"schemas"`
	} `json:"components"`
}

type eventServer struct {
	Title       string `json:"title"`
	Protocol    string `json:"protocol"`
	Description string `json:"description"`
}

type eventChannel struct {
	Address     *string `json:"address"`
	Title       string  `json:"title"`
	Description string  `json:"description"`
	Servers     []ref   `json:"servers"`
	// Messages is kept raw, to be read in the document's order.
	Messages json.RawMessage `json:"messages"`
}

// ref is a local JSON reference; name is the last part of its path.
type ref struct {
	Ref string `json:"$ref"`
}

func (r ref) name() string { return r.Ref[strings.LastIndexByte(r.Ref, '/')+1:] }

// markdown is the events section of /docs: the document's description,
// where the events go, then each channel with the headers and payload of
// each of its messages, as Redoc's own schema views.
func (ev *eventDoc) markdown() (string, error) {
	var b strings.Builder
	b.WriteString("The events phonesd writes when a phone is created or changed, as its event contract describes them: " +
		"[asyncapi.yaml](asyncapi.yaml) (also [as JSON](asyncapi.json)), an AsyncAPI 3.0 document, from which this section is made.\n\n")
	b.WriteString(ev.Info.Description)
	b.WriteString("\n\n## Where the events go\n\n")
	serverNames, servers, err := ordered[eventServer](ev.Servers)
	if err != nil {
		return "", fmt.Errorf("servers: %w", err)
	}
	for _, name := range serverNames {
		s := servers[name]
		fmt.Fprintf(&b, "**%s** (`%s`): %s\n\n", s.Title, s.Protocol, strings.TrimSpace(s.Description))
	}
	channelNames, channels, err := ordered[eventChannel](ev.Channels)
	if err != nil {
		return "", fmt.Errorf("channels: %w", err)
	}
	// shownIn names the channel under which a schema is drawn first; later
	// channels refer to it there.
	shownIn := map[string]string{}
	for _, name := range channelNames {
		ch := channels[name]
		fmt.Fprintf(&b, "## %s\n\n", ch.Title)
		var on []string
		for _, s := range ch.Servers {
			on = append(on, servers[s.name()].Title)
		}
		if ch.Address != nil {
			fmt.Fprintf(&b, "Subject `%s` on %s. ", *ch.Address, strings.Join(on, ", "))
		} else {
			fmt.Fprintf(&b, "On the %s. ", strings.Join(on, ", "))
		}
		fmt.Fprintf(&b, "%s\n\n", ch.Description)

		msgNames, msgs, err := ordered[ref](ch.Messages)
		if err != nil {
			return "", fmt.Errorf("channel %s: messages: %w", name, err)
		}
		for _, m := range msgNames {
			msg, ok := ev.Components.Messages[msgs[m].name()]
			if !ok {
				return "", fmt.Errorf("channel %s: no message %s", name, msgs[m].Ref)
			}
			if len(msgNames) > 1 {
				fmt.Fprintf(&b, "**%s**: %s\n\n", msg.Title, msg.Summary)
			}
			if msg.Headers != nil {
				b.WriteString(schemaView("Headers", msg.Headers.name(), ch.Title, shownIn))
			}
			b.WriteString(schemaView("Payload", msg.Payload.name(), ch.Title, shownIn))
		}
	}
	return b.String(), nil
}

// schemaView draws a schema with Redoc's view of it the first time, and
// refers to that place afterwards.
func schemaView(label, schema, channel string, shownIn map[string]string) string {
	if first, ok := shownIn[schema]; ok {
		return fmt.Sprintf("%s: `%s`, as under %s.\n\n", label, schema, first)
	}
	shownIn[schema] = channel
	return fmt.Sprintf("%s: `%s`\n\n<SchemaDefinition schemaRef=\"#/components/schemas/%s\" />\n\n", label, schema, schema)
}

// ordered decodes a JSON object of Ts, and returns its keys in the order
// written.
func ordered[T any](raw json.RawMessage) ([]string, map[string]T, error) {
	var m map[string]T
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, nil, err
	}
	keys, err := objectKeys(raw)
	if err != nil {
		return nil, nil, err
	}
	return keys, m, nil
}

// objectKeys returns the keys of a JSON object in the order written.
func objectKeys(raw json.RawMessage) ([]string, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, errors.New("not an object")
	}
	var keys []string
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, err
		}
		keys = append(keys, t.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil, err
		}
	}
	return keys, nil
}
