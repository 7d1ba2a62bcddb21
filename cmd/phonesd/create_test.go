package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/phonesd/phonesd/internal/phone"
)

func TestCreatePhoneStoresPhoneAndEvent(t *testing.T) {
	forBackends(t, func(t *testing.T, b backend) {
		s := b.start(t, nil)
		r := s.create(42, `{"area_code": 11, "number": "91234-5678", "type": "MOBILE", "extension": "ext 123", "active": true, "country_code": 1}`,
			[2]string{"x-customer-id", "50624"}, [2]string{"x-cid", "corr-1"})
		id := createdID(t, r)
		if got := r.header.Get("Content-Type"); got != "application/json" {
			t.Errorf("Content-Type %q; want application/json", got)
		}
		if got := r.header.Get("x-cid"); got != "corr-1" {
			t.Errorf("x-cid %q; want corr-1", got)
		}
		p, err := s.stored(testTenant, 42, id)
		if err != nil {
			t.Fatalf("stored phone: %v", err)
		}
		area, cust, ext := int32(11), int64(50624), "ext 123"
		want := phone.Phone{ID: id, Tenant: testTenant, AccountID: 42, CustomerID: &cust, Number: "91234-5678", Type: phone.Mobile,
			Active: true, AreaCode: &area, CountryCode: 1, Extension: &ext, CreatedAt: p.CreatedAt, UpdatedAt: p.CreatedAt, Version: 1}
		if !reflect.DeepEqual(p, want) {
			t.Errorf("stored %+v; want %+v", p, want)
		}

		evs := s.events(1)
		if len(evs) != 1 {
			t.Fatalf("%d events; want 1", len(evs))
		}
		ev := evs[0]
		if _, ok := ev["event_id"].(string); !ok {
			t.Errorf("event_id %v; want a string", ev["event_id"])
		}
		wantEnv := map[string]any{
			"schema_version": float64(1), "domain": "audit", "event_type": "phone_creation-1",
			"org_id": testTenant, "cid": "corr-1", "timestamp": p.CreatedAt.UTC().Format("2006-01-02T15:04:05.000Z"),
			"data": map[string]any{
				"method": "POST", "uri": "/v1/accounts/:accountId/phones", "email": "ops@bank.test",
				"roles": []any{"crm-operator"}, "origin": "CRM",
				"object": map[string]any{
					"id": float64(id), "account_id": float64(42), "customer_id": float64(50624), "area_code": "11",
					"country_code": "1", "number": "91234-5678", "type": "MOBILE", "extension": "ext 123", "active": true,
				},
			},
		}
		delete(ev, "event_id")
		if !reflect.DeepEqual(ev, wantEnv) {
			got, _ := json.Marshal(ev)
			w, _ := json.Marshal(wantEnv)
			t.Errorf("event\n got %s\nwant %s", got, w)
		}
	})
}

func TestCreatePhoneDefaultsAndAbsentFields(t *testing.T) {
	forBackends(t, func(t *testing.T, b backend) {
		s := b.start(t, nil)
		id := createdID(t, s.create(7, `{"number": "+55(11)3000.123", "type": "COMMERCIAL"}`))
		p, err := s.stored(testTenant, 7, id)
		if err != nil {
			t.Fatal(err)
		}
		if !p.Active || p.CountryCode != 55 || p.AreaCode != nil || p.Extension != nil || p.CustomerID != nil {
			t.Errorf("stored %+v; want active, country 55, no area, extension or customer", p)
		}
		if p.Number != "+55(11)3000.123" {
			t.Errorf("number %q; want it exactly as sent", p.Number)
		}
		obj := s.events(1)[0]["data"].(map[string]any)["object"].(map[string]any)
		for _, k := range []string{"customer_id", "area_code", "extension"} {
			if v, ok := obj[k]; !ok || v != nil {
				t.Errorf("event object %s = %v (present %v); want null", k, v, ok)
			}
		}
		if obj["country_code"] != "55" || obj["active"] != true {
			t.Errorf("event object %v; want country_code \"55\" and active true", obj)
		}
		ev := s.events(1)[0]
		if cid, _ := ev["cid"].(string); len(cid) != 36 {
			t.Errorf("cid %q; want a generated UUID when x-cid is absent", cid)
		}
		if roles := ev["data"].(map[string]any)["roles"]; !reflect.DeepEqual(roles, []any{"crm-operator"}) {
			t.Errorf("roles %v", roles)
		}
	})
}

func TestCreatePhoneIgnoresUnknownFields(t *testing.T) {
	forBackends(t, func(t *testing.T, b backend) {
		s := b.start(t, nil)
		id := createdID(t, s.create(8, `{"id": 999999, "account_id": 1, "org_id": "TN-other", "tenant_id": "TN-other", "number": "11", "type": "MOBILE", "extra": {"deep": [1, 2]}}`))
		if id == 999999 {
			t.Fatalf("id %d; the client chose it", id)
		}
		p, err := s.stored(testTenant, 8, id)
		if err != nil {
			t.Fatalf("phone not stored under the path's account and the token's tenant: %v", err)
		}
		if p.AccountID != 8 || p.Tenant != testTenant {
			t.Errorf("stored account %d tenant %q; want 8 and %q", p.AccountID, p.Tenant, testTenant)
		}
	})
}

func TestCreatePhoneOperationalEndpointsNeedNoToken(t *testing.T) {
	forBackends(t, func(t *testing.T, b backend) {
		s := b.start(t, nil)
		for _, path := range []string{"/healthz", "/readyz", "/openapi.json"} {
			r := s.do(http.MethodGet, path, "")
			if r.status != http.StatusOK {
				t.Errorf("GET %s: status %d; want 200", path, r.status)
			}
		}
		r := s.do(http.MethodGet, "/openapi.json", "")
		var spec map[string]any
		if err := json.Unmarshal(r.body, &spec); err != nil || spec["openapi"] != "3.1.0" {
			t.Errorf("/openapi.json is not the contract: %.80s", r.body)
		}
		if r := s.do(http.MethodPost, "/healthz", ""); r.status != http.StatusMethodNotAllowed || r.header.Get("Allow") == "" {
			t.Errorf("POST /healthz: status %d Allow %q; want 405 with Allow", r.status, r.header.Get("Allow"))
		}
	})
}

func TestCreatePhoneDuplicates(t *testing.T) {
	forBackends(t, func(t *testing.T, b backend) {
		s := b.start(t, nil)
		createdID(t, s.create(1, `{"number": "91234-5678", "type": "MOBILE", "area_code": 11, "extension": " Ext 9 "}`))
		cases := []struct {
			name    string
			account int64
			body    string
			status  int
		}{
			{"same digits other punctuation", 1, `{"number": "912345678", "type": "MOBILE", "area_code": 11, "extension": "ext 9"}`, 409},
			{"other type still conflicts", 1, `{"number": "(9)1234 5678", "type": "RESIDENTIAL", "area_code": 11, "extension": "EXT 9"}`, 409},
			{"explicit default country conflicts", 1, `{"number": "912345678", "type": "MOBILE", "area_code": 11, "country_code": 55, "extension": "ext 9"}`, 409},
			{"other country", 1, `{"number": "912345678", "type": "MOBILE", "area_code": 11, "country_code": 1, "extension": "ext 9"}`, 200},
			{"no extension differs", 1, `{"number": "912345678", "type": "MOBILE", "area_code": 11}`, 200},
			{"blank extension is no extension", 1, `{"number": "912345678", "type": "MOBILE", "area_code": 11, "extension": "   "}`, 409},
			{"area absent differs from area given", 1, `{"number": "912345678", "type": "MOBILE", "extension": "ext 9"}`, 200},
			{"area 0 differs from absent", 1, `{"number": "912345678", "type": "MOBILE", "area_code": 0, "extension": "ext 9"}`, 200},
			{"inactive never conflicts", 1, `{"number": "912345678", "type": "MOBILE", "area_code": 11, "extension": "ext 9", "active": false}`, 200},
			{"another account", 2, `{"number": "912345678", "type": "MOBILE", "area_code": 11, "extension": "ext 9"}`, 200},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				r := s.create(c.account, c.body)
				if r.status != c.status {
					t.Fatalf("status %d body %s; want %d", r.status, r.body, c.status)
				}
				if c.status == 409 && string(r.body) != `{"message":"Phone number already exists"}` {
					t.Errorf("body %s; want the contract's 409 body", r.body)
				}
			})
		}
		// The same account number in another tenant is another account.
		other := s.keys.token(t, claims{"tenant_id": "TN-test-2"})
		r := s.do(http.MethodPost, "/accounts/v1/accounts/1/phones", `{"number": "91234-5678", "type": "MOBILE", "area_code": 11, "extension": "ext 9"}`, bearer(other), jsonCT)
		createdID(t, r)
		// 1 first + 6 successes above + 1 in the other tenant; no event for a 409.
		if n := len(s.delivered()); n != 8 {
			t.Errorf("%d events; want 8 (none for a 409)", n)
		}
	})
}

func TestCreatePhoneConcurrentDuplicates(t *testing.T) {
	forBackends(t, func(t *testing.T, b backend) {
		s := b.start(t, nil)
		const n = 20
		var wg sync.WaitGroup
		statuses := make([]int, n)
		bodies := make([]string, n)
		startGun := make(chan struct{})
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-startGun
				r := s.create(5, `{"number": "11999990000", "type": "MOBILE", "area_code": 21}`)
				statuses[i], bodies[i] = r.status, string(r.body)
			}()
		}
		close(startGun)
		wg.Wait()
		counts := map[int]int{}
		for i, st := range statuses {
			counts[st]++
			if st == 409 && bodies[i] != `{"message":"Phone number already exists"}` {
				t.Errorf("409 body %s", bodies[i])
			}
		}
		if counts[200] != 1 || counts[409] != n-1 {
			t.Fatalf("statuses %v; want one 200 and %d 409s", counts, n-1)
		}
		if evs := s.delivered(); len(evs) != 1 {
			t.Errorf("%d events; want exactly 1", len(evs))
		}
	})
}

func TestCreatePhoneCorrelationID(t *testing.T) {
	forBackends(t, func(t *testing.T, b backend) {
		s := b.start(t, nil)
		long := strings.Repeat("c", 129)
		for _, c := range []struct {
			name, sent string
			kept       bool
		}{
			{"printable kept", "abc-123 XYZ", true},
			{"128 chars kept", strings.Repeat("c", 128), true},
			{"129 chars replaced", long, false},
			{"non-ASCII replaced", "caf\u00e9", false},
		} {
			t.Run(c.name, func(t *testing.T) {
				r := s.create(9, fmt.Sprintf(`{"number": "%d", "type": "MOBILE"}`, time.Now().UnixNano()%1e12), [2]string{"x-cid", c.sent})
				createdID(t, r)
				got := r.header.Get("x-cid")
				if c.kept && got != c.sent {
					t.Errorf("x-cid %q; want %q", got, c.sent)
				}
				if !c.kept && (got == c.sent || len(got) != 36) {
					t.Errorf("x-cid %q; want a generated UUID", got)
				}
			})
		}
	})
}
