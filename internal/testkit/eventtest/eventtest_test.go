package eventtest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/phonesd/phonesd/api"
	"github.com/phonesd/phonesd/internal/phone"
)

func load(t *testing.T, log string) *Contract {
	t.Helper()
	doc, err := api.AsyncAPIJSON()
	if err != nil {
		t.Fatal(err)
	}
	c, err := Load(doc, log)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// events returns events as the domain builds them, between them every
// optional field absent and present, null where it may be, at its
// longest, and in scripts other than Latin.
func events(t *testing.T) []phone.Event {
	t.Helper()
	at := time.Date(2026, 11, 26, 23, 1, 8, 123_000_000, time.UTC)
	ptr := func(s string) *string { return &s }
	area := int32(2147483647)
	customer := int64(9223372036854775807)
	bare := phone.Phone{ID: 1, Tenant: "TN-1", AccountID: 1, Number: "1", Type: phone.Mobile, Active: true,
		CountryCode: phone.DefaultCountryCode, CreatedAt: at, UpdatedAt: at}
	full := phone.Phone{ID: 9223372036854775807, Tenant: strings.Repeat("ç", 64), AccountID: 9223372036854775807,
		CustomerID: &customer, Number: "+55 (11) 9.1234", Type: phone.Commercial, AreaCode: &area,
		CountryCode: phone.MaxCountryCode, Extension: ptr("ramal 📞 ñö"), CreatedAt: at, UpdatedAt: at.Add(time.Second)}
	zero := int32(0)
	zeros := bare
	zeros.AreaCode, zeros.CountryCode, zeros.Extension, zeros.Active = &zero, 0, ptr(""), false
	who := phone.Audit{CID: strings.Repeat("~", 128), Email: "opé@bank.example", Roles: []string{"crm-operator", "日本"}, Origin: "APP"}
	var out []phone.Event
	for _, p := range []phone.Phone{bare, full, zeros} {
		for _, make := range []func(string, phone.Phone, phone.Audit) (phone.Event, error){phone.CreatedEvent, phone.ChangedEvent} {
			for _, a := range []phone.Audit{{CID: "c", Origin: "API"}, who} {
				ev, err := make("019ad2a4-5b9b-7c31-9d1e-3f2a6b0c4d5e", p, a)
				if err != nil {
					t.Fatal(err)
				}
				out = append(out, ev)
			}
		}
	}
	return out
}

// TestTheDomainsEventsPass: every kind of event the domain builds passes,
// from the file and from its channel, and each is logged once however
// often it is read.
func TestTheDomainsEventsPass(t *testing.T) {
	log := filepath.Join(t.TempDir(), "checked")
	c := load(t, log)
	evs := events(t)
	for range 2 {
		for _, ev := range evs {
			if err := c.Line(ev.Payload); err != nil {
				t.Errorf("line %s: %v", ev.Payload, err)
			}
			header := map[string][]string{"Nats-Msg-Id": {ev.ID}, "Nats-Expected-Stream": {"ACCOUNTS_EVENTS"}}
			if err := c.Message("bank.accounts.audit."+ev.Type, header, ev.Payload); err != nil {
				t.Errorf("message %s: %v", ev.Payload, err)
			}
		}
	}
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Count(string(b), "\n"), 2*len(evs); got != want {
		t.Errorf("%d events logged; want %d, each read once from the file and once from JetStream", got, want)
	}
}

// TestWhatBreaksTheContractFails: each way an event can stray from the
// document is caught, and says where.
func TestWhatBreaksTheContractFails(t *testing.T) {
	c := load(t, "")
	created := events(t)[0]
	var ev map[string]any
	if err := json.Unmarshal(created.Payload, &ev); err != nil {
		t.Fatal(err)
	}
	header := func(edit func(map[string][]string)) map[string][]string {
		h := map[string][]string{"Nats-Msg-Id": {created.ID}, "Nats-Expected-Stream": {"S"}}
		if edit != nil {
			edit(h)
		}
		return h
	}
	object := func(edit func(o map[string]any)) []byte {
		var e map[string]any
		json.Unmarshal(created.Payload, &e)
		edit(e["data"].(map[string]any)["object"].(map[string]any))
		b, _ := json.Marshal(e)
		return b
	}
	const subject = "accounts.audit.phone_creation-1"
	for _, tc := range []struct {
		name    string
		subject string
		header  map[string][]string
		payload []byte
		want    string
	}{
		{"a field the document does not list", subject, header(nil), object(func(o map[string]any) { o["nickname"] = "x" }), "nickname"},
		{"extension left out", subject, header(nil), object(func(o map[string]any) { delete(o, "extension") }), "extension"},
		{"area_code as a number", subject, header(nil), object(func(o map[string]any) { o["area_code"] = 11 }), "area_code"},
		{"a number too long", subject, header(nil), object(func(o map[string]any) { o["number"] = strings.Repeat("1", 16) }), "number"},
		{"an invisible character in the extension", subject, header(nil), object(func(o map[string]any) { o["extension"] = "1\u200b" }), "extension"},
		{"a creation on the change channel", "accounts.audit.phone_change-1", header(nil), created.Payload, "phone_change-1"},
		{"an event on no channel", "accounts.audit.phone_creation-2", header(nil), created.Payload, "no channel"},
		{"no Nats-Msg-Id", subject, header(func(h map[string][]string) { delete(h, "Nats-Msg-Id") }), created.Payload, "Nats-Msg-Id"},
		{"another Nats-Msg-Id", subject, header(func(h map[string][]string) { h["Nats-Msg-Id"] = []string{"019ad2a4-5b9b-7c31-9d1e-000000000000"} }), created.Payload, "event_id"},
		{"a header the document does not list", subject, header(func(h map[string][]string) { h["X-Tenant"] = []string{"TN-1"} }), created.Payload, "X-Tenant"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := c.Message(tc.subject, tc.header, tc.payload)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%v; want an error naming %s", err, tc.want)
			}
		})
	}
	if err := c.Line(object(func(o map[string]any) { o["nickname"] = "x" })); err == nil || !strings.Contains(err.Error(), "nickname") {
		t.Errorf("a line with a field the document does not list: %v; want an error naming it", err)
	}
	unknown := strings.Replace(string(created.Payload), phone.EventCreated, "phone_creation-2", 1)
	if err := c.Line([]byte(unknown)); err == nil || !strings.Contains(err.Error(), "phone_creation-2") {
		t.Errorf("a line of an event_type the document does not have: %v; want an error naming it", err)
	}
	if err := c.Message("natstest.ready", nil, []byte("ping")); err != nil {
		t.Errorf("a message on a subject of no event: %v; want none", err)
	}
}
