package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/phonesd/phonesd/api"
	"github.com/phonesd/phonesd/internal/testkit/natstest"
)

// TestEventsFollowTheContract makes, through the API, events of every
// shape phonesd writes: created and changed; every optional field absent
// and present; null area code and extension, and an empty extension; the
// longest number, extension, tenant, correlation ID and ids; the smallest
// and largest codes; text beyond ASCII; a token with no email, roles or
// origin. It reads them back from the events file and from JetStream,
// where the readers check each against api/asyncapi.yaml, and decodes each
// into api.PhoneEvent, the consumers' type, refusing unknown fields: it
// must encode back to the very bytes phonesd sent, and hold what the
// requests asked for.
func TestEventsFollowTheContract(t *testing.T) {
	forBackends(t, func(t *testing.T, b backend) {
		for _, sink := range []string{"file", "jetstream"} {
			t.Run(sink, func(t *testing.T) {
				var st *natstest.Stream
				env := map[string]string{}
				if sink == "jetstream" {
					st = natstest.New(t)
					env = natsEnv(st, st.URL)
				}
				s := b.start(t, env)
				want := makeEveryEvent(t, s)

				var payloads [][]byte
				if st != nil {
					for _, m := range st.WaitMessages(t, len(want)) {
						payloads = append(payloads, m.Data)
					}
				} else {
					s.events(len(want))
					b, err := os.ReadFile(filepath.Join(s.dataDir, eventsFile))
					if err != nil {
						t.Fatal(err)
					}
					payloads = bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n"))
				}
				if len(payloads) != len(want) {
					t.Fatalf("%d events; want %d", len(payloads), len(want))
				}
				for i, p := range payloads {
					dec := json.NewDecoder(bytes.NewReader(p))
					dec.DisallowUnknownFields()
					var ev api.PhoneEvent
					if err := dec.Decode(&ev); err != nil {
						t.Errorf("event %d does not decode into api.PhoneEvent: %v\n%s", i, err, p)
						continue
					}
					if again, _ := json.Marshal(ev); !bytes.Equal(again, p) {
						t.Errorf("event %d as api.PhoneEvent encodes as\n%s\nnot as phonesd sent it\n%s", i, again, p)
					}
					got := shape{ev.EventType, ev.OrgID, ev.CID, ev.Data.Email, ev.Data.Roles, ev.Data.Origin, ev.Data.Object}
					got.Object.ID = 0
					if want[i].CID == "" {
						// Sent without x-cid: phonesd's own, checked by the contract.
						if got.CID == "" {
							t.Errorf("event %d: no cid", i)
						}
						got.CID = ""
					}
					if !reflect.DeepEqual(got, want[i]) {
						t.Errorf("event %d:\n got %+v\nwant %+v", i, got, want[i])
					}
				}
			})
		}
	})
}

// shape is what a test asks of an event: all but the ids and times.
type shape struct {
	Type, Org, CID, Email string
	Roles                 []string
	Origin                string
	Object                api.AuditedPhone
}

// makeEveryEvent creates and changes phones on s so that their events take
// every shape, and returns those shapes in the order of the events.
func makeEveryEvent(t *testing.T, s *phonesd) []shape {
	t.Helper()
	const maxID = 9223372036854775807
	tenant := "TN-" + strings.Repeat("ç", 61) // 64 code points
	cid := strings.Repeat("~", 128)
	wide := s.keys.token(t, claims{"tenant_id": tenant, "email": "opé@bank.example", "roles": []string{"crm-operator", "日本語"}, "origin": "APP"})
	bare := s.keys.token(t, claims{"email": nil, "roles": nil, "origin": nil})
	send := func(method, path, token, body string, headers ...[2]string) response {
		t.Helper()
		r := s.do(method, path, body, append([][2]string{bearer(token), jsonCT}, headers...)...)
		if r.status != http.StatusOK {
			t.Fatalf("%s %s %s: %d %s; want 200", method, path, body, r.status, r.body)
		}
		return r
	}
	phones := func(account int64) string { return fmt.Sprintf("/accounts/v1/accounts/%d/phones", account) }
	phoneAt := func(account, id int64) string { return fmt.Sprintf("%s/%d", phones(account), id) }
	ptr := func(s string) *string { return &s }
	maxCustomer := int64(maxID)

	minimal := createdID(t, send(http.MethodPost, phones(1), bare, `{"number": "1", "type": "MOBILE"}`))
	full := createdID(t, send(http.MethodPost, phones(maxID), wide,
		`{"number": "+55 (11) 9.1234", "type": "COMMERCIAL", "active": false, "area_code": 2147483647, "country_code": 99999, "extension": "ramal 📞 ñö"}`,
		[2]string{"x-customer-id", "9223372036854775807"}, [2]string{"x-cid", cid}))
	zeros := createdID(t, send(http.MethodPost, phones(2), wide, `{"number": "0", "type": "RESIDENTIAL", "area_code": 0, "country_code": 0, "extension": ""}`,
		[2]string{"x-cid", "c"}))
	send(http.MethodPatch, phoneAt(maxID, full), wide, `{"area_code": null, "extension": null, "active": true}`, [2]string{"x-cid", cid})
	send(http.MethodPatch, phoneAt(1, minimal), bare, `{"number": "(11) 91234-5678", "type": "RESIDENTIAL", "extension": "日本語"}`)
	send(http.MethodPatch, phoneAt(2, zeros), wide, `{"country_code": 1, "active": false}`, [2]string{"x-cid", "c"})

	none := []string{}
	wideRoles := []string{"crm-operator", "日本語"}
	anyCID := "" // phonesd makes one
	want := []shape{
		{api.EventPhoneCreation, testTenant, anyCID, "", none, "API",
			api.AuditedPhone{AccountID: 1, CountryCode: "55", Number: "1", Type: api.PhoneTypeMOBILE, Active: true}},
		{api.EventPhoneCreation, tenant, cid, "opé@bank.example", wideRoles, "APP",
			api.AuditedPhone{AccountID: maxID, CustomerID: &maxCustomer, AreaCode: ptr("2147483647"), CountryCode: "99999",
				Number: "+55 (11) 9.1234", Type: api.PhoneTypeCOMMERCIAL, Extension: ptr("ramal 📞 ñö")}},
		{api.EventPhoneCreation, tenant, "c", "opé@bank.example", wideRoles, "APP",
			api.AuditedPhone{AccountID: 2, AreaCode: ptr("0"), CountryCode: "0", Number: "0", Type: api.PhoneTypeRESIDENTIAL, Extension: ptr(""), Active: true}},
		{api.EventPhoneChange, tenant, cid, "opé@bank.example", wideRoles, "APP",
			api.AuditedPhone{AccountID: maxID, CustomerID: &maxCustomer, CountryCode: "99999",
				Number: "+55 (11) 9.1234", Type: api.PhoneTypeCOMMERCIAL, Active: true}},
		{api.EventPhoneChange, testTenant, anyCID, "", none, "API",
			api.AuditedPhone{AccountID: 1, CountryCode: "55", Number: "(11) 91234-5678", Type: api.PhoneTypeRESIDENTIAL, Extension: ptr("日本語"), Active: true}},
		{api.EventPhoneChange, tenant, "c", "opé@bank.example", wideRoles, "APP",
			api.AuditedPhone{AccountID: 2, AreaCode: ptr("0"), CountryCode: "1", Number: "0", Type: api.PhoneTypeRESIDENTIAL, Extension: ptr("")}},
	}
	return want
}
