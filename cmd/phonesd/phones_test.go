package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"sort"
	"sync"
	"testing"

	"github.com/phonesd/phonesd/api"
)

// phoneJSON is a phone object as the API returns it.
type phoneJSON struct {
	ID          int64   `json:"id"`
	AccountID   int64   `json:"account_id"`
	CustomerID  *int64  `json:"customer_id"`
	OrgID       string  `json:"org_id"`
	Number      string  `json:"number"`
	Extension   *string `json:"extension"`
	Type        string  `json:"type"`
	AreaCode    *string `json:"area_code"`
	CountryCode *string `json:"country_code"`
	Active      bool    `json:"active"`
	CreatedAt   string  `json:"created_at"`
	UpdatedAt   string  `json:"updated_at"`
}

type listJSON struct {
	Items      []phoneJSON `json:"items"`
	NextCursor *string     `json:"next_cursor"`
}

func decodeAs[T any](t *testing.T, r response) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("body %s: %v", r.body, err)
	}
	return v
}

func (s *phonesd) get(account, id int64, headers ...[2]string) response {
	s.t.Helper()
	return s.do(http.MethodGet, fmt.Sprintf("/accounts/v1/accounts/%d/phones/%d", account, id), "", append([][2]string{bearer(s.token)}, headers...)...)
}

func (s *phonesd) list(account int64, query string) response {
	s.t.Helper()
	return s.do(http.MethodGet, fmt.Sprintf("/accounts/v1/accounts/%d/phones%s", account, query), "", bearer(s.token))
}

func (s *phonesd) patch(account, id int64, body string, headers ...[2]string) response {
	s.t.Helper()
	return s.do(http.MethodPatch, fmt.Sprintf("/accounts/v1/accounts/%d/phones/%d", account, id), body, append([][2]string{bearer(s.token), jsonCT}, headers...)...)
}

func str(s string) *string { return &s }

func TestGetPhone(t *testing.T) {
	forBackends(t, func(t *testing.T, b backend) {
		s := b.start(t, nil)
		id := createdID(t, s.create(10, `{"number": "91234-5678", "type": "MOBILE", "area_code": 11, "extension": "Ext 1"}`, [2]string{"x-customer-id", "77"}))
		r := s.get(10, id)
		if r.status != 200 || r.header.Get("Content-Type") != "application/json" {
			t.Fatalf("status %d type %q body %s", r.status, r.header.Get("Content-Type"), r.body)
		}
		if got := r.header.Get("ETag"); got != `"1"` {
			t.Errorf("ETag %q; want \"1\"", got)
		}
		got := decodeAs[phoneJSON](t, r)
		stored, err := s.stored(testTenant, 10, id)
		if err != nil {
			t.Fatal(err)
		}
		at := stored.CreatedAt.UTC().Format("2006-01-02T15:04:05.000Z")
		cust := int64(77)
		want := phoneJSON{ID: id, AccountID: 10, CustomerID: &cust, OrgID: testTenant, Number: "91234-5678", Extension: str("Ext 1"),
			Type: "MOBILE", AreaCode: str("11"), CountryCode: str("55"), Active: true, CreatedAt: at, UpdatedAt: at}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("got %+v\nwant %+v", got, want)
		}
		raw := r.json(t)
		for _, k := range []string{"customer_id", "extension", "area_code"} {
			if _, ok := raw[k]; !ok {
				t.Errorf("field %s missing; want present (null when absent)", k)
			}
		}

		bare := createdID(t, s.create(10, `{"number": "1", "type": "RESIDENTIAL"}`))
		raw = s.get(10, bare).json(t)
		for _, k := range []string{"customer_id", "extension", "area_code"} {
			if v, ok := raw[k]; !ok || v != nil {
				t.Errorf("%s = %v (present %v); want null", k, v, ok)
			}
		}

		other := s.keys.token(t, claims{"tenant_id": "TN-other"})
		notFound := []response{
			s.get(10, 999999),
			s.get(11, id),
			s.do(http.MethodGet, fmt.Sprintf("/accounts/v1/accounts/10/phones/%d", id), "", bearer(other)),
		}
		for i, r := range notFound {
			if r.status != 404 || string(r.body) != `{"message":"Phone not found"}` {
				t.Errorf("case %d: status %d body %s; want 404 Phone not found", i, r.status, r.body)
			}
		}
		checkRejected(t, s, []rejected{
			{name: "phoneId 0", method: http.MethodGet, path: "/accounts/v1/accounts/10/phones/0", headers: [][2]string{bearer(s.token)}, status: 400, field: "phoneId"},
			{name: "phoneId leading zero", method: http.MethodGet, path: fmt.Sprintf("/accounts/v1/accounts/10/phones/0%d", id), headers: [][2]string{bearer(s.token)}, status: 400, field: "phoneId"},
			{name: "phoneId text", method: http.MethodGet, path: "/accounts/v1/accounts/10/phones/abc", headers: [][2]string{bearer(s.token)}, status: 400, field: "phoneId"},
			{name: "accountId before phoneId", method: http.MethodGet, path: "/accounts/v1/accounts/x/phones/y", headers: [][2]string{bearer(s.token)}, status: 400, field: "accountId"},
			{name: "no token", method: http.MethodGet, path: "/accounts/v1/accounts/10/phones/1", headers: [][2]string{}, status: 401},
			{name: "account token elsewhere", method: http.MethodGet, path: "/accounts/v1/accounts/10/phones/1", headers: [][2]string{bearer(s.keys.token(t, claims{"account_id": 11}))}, status: 403},
			{name: "DELETE", method: http.MethodDelete, path: "/accounts/v1/accounts/10/phones/1", headers: [][2]string{bearer(s.token)}, status: 405},
		}, 2)
	})
}

func TestListPhones(t *testing.T) {
	forBackends(t, func(t *testing.T, b backend) {
		s := b.start(t, nil)
		if r := s.list(20, ""); r.status != 200 || string(r.body) != `{"items":[]}` {
			t.Fatalf("empty account: status %d body %s; want 200 {\"items\":[]}", r.status, r.body)
		}
		const n = 1200
		ids := make([]int64, n)
		var wg sync.WaitGroup
		sem := make(chan struct{}, 8)
		for i := range n {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				typ := []string{"MOBILE", "RESIDENTIAL", "COMMERCIAL"}[i%3]
				r := s.create(20, fmt.Sprintf(`{"number": "%d", "type": "%s", "active": %v}`, 1000+i, typ, i%2 == 0))
				if r.status != 200 {
					t.Errorf("create %d: %d %s", i, r.status, r.body)
					return
				}
				ids[i] = decodeAs[struct{ ID int64 }](t, r).ID
			}()
		}
		wg.Wait()
		sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
		createdID(t, s.create(21, `{"number": "5", "type": "MOBILE"}`)) // another account's phone never appears

		// listAll pages through account 20's phones as filter selects them,
		// 500 a page, through the public client.
		c := s.api()
		listAll := func(filter api.GetAccountsV1AccountsAccountIdPhonesParams) (phones []api.Phone, pages int) {
			t.Helper()
			params := filter
			params.AccountId, params.Limit = 20, api.NewOptInt32(500)
			for {
				res, err := c.GetAccountsV1AccountsAccountIdPhones(context.Background(), params)
				page := answerAs[*api.PhoneListHeaders](t, res, err)
				pages++
				phones = append(phones, page.Response.Items...)
				next, ok := page.Response.NextCursor.Get()
				if !ok {
					return phones, pages
				}
				params.Cursor = api.NewOptString(next)
			}
		}
		all, pages := listAll(api.GetAccountsV1AccountsAccountIdPhonesParams{})
		if pages != 3 {
			t.Errorf("%d pages; want 3 of 500, 500 and 200", pages)
		}
		seen := make([]int64, len(all))
		for i, p := range all {
			seen[i] = int64(p.ID)
		}
		if !reflect.DeepEqual(seen, ids) {
			t.Fatalf("pages returned %d phones; want each of the %d exactly once, by id", len(seen), n)
		}
		res, err := c.GetAccountsV1AccountsAccountIdPhones(context.Background(), api.GetAccountsV1AccountsAccountIdPhonesParams{AccountId: 20})
		if got := answerAs[*api.PhoneListHeaders](t, res, err).Response; len(got.Items) != 50 || !got.NextCursor.Set {
			t.Errorf("default page: %d items, cursor %v; want 50 and a cursor", len(got.Items), got.NextCursor)
		}

		active := func(a bool) api.OptAccountPhoneActiveQuery {
			return api.NewOptAccountPhoneActiveQuery(api.AccountPhoneActiveQuery(a))
		}
		for _, tc := range []struct {
			filter api.GetAccountsV1AccountsAccountIdPhonesParams
			want   func(i int) bool
		}{
			{api.GetAccountsV1AccountsAccountIdPhonesParams{Active: active(true)}, func(i int) bool { return i%2 == 0 }},
			{api.GetAccountsV1AccountsAccountIdPhonesParams{Active: active(false)}, func(i int) bool { return i%2 == 1 }},
			{api.GetAccountsV1AccountsAccountIdPhonesParams{Type: api.NewOptAccountPhoneTypeQuery(api.AccountPhoneTypeQueryCOMMERCIAL)}, func(i int) bool { return i%3 == 2 }},
			{api.GetAccountsV1AccountsAccountIdPhonesParams{Type: api.NewOptAccountPhoneTypeQuery(api.AccountPhoneTypeQueryMOBILE), Active: active(false)}, func(i int) bool { return i%3 == 0 && i%2 == 1 }},
		} {
			want := 0
			for i := range n {
				if tc.want(i) {
					want++
				}
			}
			got, _ := listAll(tc.filter)
			for _, p := range got {
				var i int
				fmt.Sscanf(string(p.Number), "%d", &i)
				if !tc.want(i - 1000) {
					t.Errorf("type %v, active %v returned %+v", tc.filter.Type, tc.filter.Active, p)
				}
			}
			if len(got) != want {
				t.Errorf("type %v, active %v: %d phones; want %d", tc.filter.Type, tc.filter.Active, len(got), want)
			}
		}

		first := decodeAs[listJSON](t, s.list(20, "?limit=1&active=true"))
		cursor := *first.NextCursor
		get := func(path string) rejected {
			return rejected{name: path, method: http.MethodGet, path: "/accounts/v1/accounts/" + path, headers: [][2]string{bearer(s.token)}}
		}
		cases := []rejected{}
		for _, c := range []struct{ path, field string }{
			{"20/phones?limit=0", "limit"}, {"20/phones?limit=501", "limit"}, {"20/phones?limit=abc", "limit"}, {"20/phones?limit=01", "limit"},
			{"20/phones?active=TRUE", "active"}, {"20/phones?active=1", "active"}, {"20/phones?active=true&active=false", "active"},
			{"20/phones?type=mobile", "type"}, {"20/phones?cursor=garbage", "cursor"},
			{"20/phones?active=false&cursor=" + cursor, "cursor"}, // made for other filters
			{"21/phones?active=true&cursor=" + cursor, "cursor"},  // made for another account
			{"0/phones", "accountId"},
		} {
			r := get(c.path)
			r.status, r.field = 400, c.field
			cases = append(cases, r)
		}
		checkRejected(t, s, cases, n+1)
		other := s.keys.token(t, claims{"tenant_id": "TN-other"})
		r := s.do(http.MethodGet, "/accounts/v1/accounts/20/phones?active=true&cursor="+cursor, "", bearer(other))
		if r.status != 400 {
			t.Errorf("cursor of another tenant: %d %s; want 400", r.status, r.body)
		}
		if r := s.do(http.MethodGet, "/accounts/v1/accounts/20/phones", "", bearer(other)); string(r.body) != `{"items":[]}` {
			t.Errorf("another tenant's account 20: %s; want no items", r.body)
		}
	})
}

func TestUpdatePhone(t *testing.T) {
	forBackends(t, func(t *testing.T, b backend) {
		s := b.start(t, nil)
		id := createdID(t, s.create(30, `{"number": "91234-5678", "type": "MOBILE", "area_code": 11, "extension": "ext 1"}`, [2]string{"x-customer-id", "5"}))
		before := decodeAs[phoneJSON](t, s.get(30, id))

		r := s.patch(30, id, `{"type": "COMMERCIAL", "extension": null, "unknown": 1}`)
		if r.status != 200 || r.header.Get("ETag") != `"2"` {
			t.Fatalf("status %d ETag %q body %s; want 200 with ETag \"2\"", r.status, r.header.Get("ETag"), r.body)
		}
		after := decodeAs[phoneJSON](t, r)
		want := before
		want.Type, want.Extension, want.UpdatedAt = "COMMERCIAL", nil, after.UpdatedAt
		if !reflect.DeepEqual(after, want) {
			t.Errorf("after PATCH %+v\nwant %+v", after, want)
		}
		if after.UpdatedAt < before.CreatedAt {
			t.Errorf("updated_at %s before created_at %s", after.UpdatedAt, before.CreatedAt)
		}
		if got := decodeAs[phoneJSON](t, s.get(30, id)); !reflect.DeepEqual(got, after) {
			t.Errorf("GET after PATCH %+v; want %+v", got, after)
		}

		evs := s.events(2)
		change := evs[1]
		data := change["data"].(map[string]any)
		if change["event_type"] != "phone_change-1" || data["method"] != "PATCH" || data["uri"] != "/v1/accounts/:accountId/phones/:phoneId" || change["timestamp"] != after.UpdatedAt {
			t.Errorf("change event %v", change)
		}
		wantObj := map[string]any{"id": float64(id), "account_id": float64(30), "customer_id": float64(5), "area_code": "11", "country_code": "55",
			"number": "91234-5678", "type": "COMMERCIAL", "extension": nil, "active": true}
		if obj := data["object"]; !reflect.DeepEqual(obj, wantObj) {
			t.Errorf("change event object %v; want %v", obj, wantObj)
		}

		// A PATCH that changes nothing: same ETag, same updated_at, no event.
		r = s.patch(30, id, `{"type": "COMMERCIAL", "number": "91234-5678", "extension": null}`)
		if r.status != 200 || r.header.Get("ETag") != `"2"` || decodeAs[phoneJSON](t, r).UpdatedAt != after.UpdatedAt {
			t.Errorf("no-op PATCH: status %d ETag %q body %s; want the phone unchanged", r.status, r.header.Get("ETag"), r.body)
		}

		// If-Match: the current ETag or * applies; a stale one changes nothing.
		if r := s.patch(30, id, `{"area_code": 12}`, [2]string{"If-Match", `"1"`}); r.status != 412 {
			t.Errorf("stale If-Match: %d %s; want 412", r.status, r.body)
		}
		if r := s.patch(30, id, `{"area_code": 12}`, [2]string{"If-Match", `W/"2"`}); r.status != 412 {
			t.Errorf("weak If-Match: %d %s; want 412 (strong comparison)", r.status, r.body)
		}
		if r := s.patch(30, id, `{"area_code": 12}`, [2]string{"If-Match", `"7", "2"`}); r.status != 200 || r.header.Get("ETag") != `"3"` {
			t.Errorf("current If-Match: %d %s; want 200 with ETag \"3\"", r.status, r.body)
		}
		if r := s.patch(30, id, `{"area_code": null}`, [2]string{"If-Match", `*`}); r.status != 200 || decodeAs[phoneJSON](t, r).AreaCode != nil {
			t.Errorf("If-Match *: %d %s; want 200 with area_code cleared", r.status, r.body)
		}
		// 1 create + 3 effective changes.
		s.events(4)

		checkRejected(t, s, []rejected{
			{name: "empty object", method: http.MethodPatch, path: fmt.Sprintf("/accounts/v1/accounts/30/phones/%d", id), body: `{}`, status: 400, field: "body"},
			{name: "only unknown fields", method: http.MethodPatch, path: fmt.Sprintf("/accounts/v1/accounts/30/phones/%d", id), body: `{"id": 5}`, status: 400, field: "body"},
			{name: "null number", method: http.MethodPatch, path: fmt.Sprintf("/accounts/v1/accounts/30/phones/%d", id), body: `{"number": null}`, status: 400, field: "number"},
			{name: "null type", method: http.MethodPatch, path: fmt.Sprintf("/accounts/v1/accounts/30/phones/%d", id), body: `{"type": null}`, status: 400, field: "type"},
			{name: "null active", method: http.MethodPatch, path: fmt.Sprintf("/accounts/v1/accounts/30/phones/%d", id), body: `{"active": null}`, status: 400, field: "active"},
			{name: "null country", method: http.MethodPatch, path: fmt.Sprintf("/accounts/v1/accounts/30/phones/%d", id), body: `{"country_code": null}`, status: 400, field: "country_code"},
			{name: "bad number", method: http.MethodPatch, path: fmt.Sprintf("/accounts/v1/accounts/30/phones/%d", id), body: `{"number": "abc"}`, status: 400, field: "number"},
			{name: "area beyond int32", method: http.MethodPatch, path: fmt.Sprintf("/accounts/v1/accounts/30/phones/%d", id), body: `{"area_code": 2147483648}`, status: 400, field: "area_code"},
			{name: "long extension", method: http.MethodPatch, path: fmt.Sprintf("/accounts/v1/accounts/30/phones/%d", id), body: `{"extension": "12345678901"}`, status: 400, field: "extension"},
			{name: "schema order", method: http.MethodPatch, path: fmt.Sprintf("/accounts/v1/accounts/30/phones/%d", id), body: `{"extension": 1, "type": "X"}`, status: 400, field: "type"},
			{name: "bad If-Match", method: http.MethodPatch, path: fmt.Sprintf("/accounts/v1/accounts/30/phones/%d", id), body: `{"active": true}`,
				headers: [][2]string{bearer(s.token), jsonCT, {"If-Match", "2"}}, status: 400, field: "If-Match"},
			{name: "unknown phone", method: http.MethodPatch, path: "/accounts/v1/accounts/30/phones/999999", body: `{"active": true}`, status: 404, message: "Phone not found"},
			{name: "other account", method: http.MethodPatch, path: fmt.Sprintf("/accounts/v1/accounts/31/phones/%d", id), body: `{"active": true}`, status: 404, message: "Phone not found"},
			{name: "text/plain", method: http.MethodPatch, path: fmt.Sprintf("/accounts/v1/accounts/30/phones/%d", id), body: `{"active": true}`,
				headers: [][2]string{bearer(s.token), {"Content-Type", "text/plain"}}, status: 415},
		}, 4)
		if got := decodeAs[phoneJSON](t, s.get(30, id)); got.Type != "COMMERCIAL" || got.Number != "91234-5678" {
			t.Errorf("rejected PATCHes changed the phone: %+v", got)
		}
	})
}

func TestDeactivateAndDuplicatesOnUpdate(t *testing.T) {
	forBackends(t, func(t *testing.T, b backend) {
		s := b.start(t, nil)
		body := `{"number": "3333-4444", "type": "MOBILE", "area_code": 21}`
		first := createdID(t, s.create(40, body))
		if r := s.create(40, body); r.status != 409 {
			t.Fatalf("second create: %d; want 409", r.status)
		}
		if r := s.patch(40, first, `{"active": false}`); r.status != 200 || decodeAs[phoneJSON](t, r).Active {
			t.Fatalf("deactivate: %d %s", r.status, r.body)
		}
		second := createdID(t, s.create(40, body)) // deactivating freed the number
		// Reactivating the first would duplicate the second.
		if r := s.patch(40, first, `{"active": true}`); r.status != 409 || string(r.body) != `{"message":"Phone number already exists"}` {
			t.Errorf("reactivate onto an active duplicate: %d %s; want 409", r.status, r.body)
		}
		// Editing an inactive phone is fine.
		if r := s.patch(40, first, `{"extension": "old"}`); r.status != 200 {
			t.Errorf("edit inactive: %d %s; want 200", r.status, r.body)
		}
		// Changing another phone into the same key collides.
		third := createdID(t, s.create(40, `{"number": "5555", "type": "MOBILE", "area_code": 21}`))
		if r := s.patch(40, third, `{"number": "(3333) 4444"}`); r.status != 409 {
			t.Errorf("update onto an active duplicate: %d %s; want 409", r.status, r.body)
		}
		if r := s.patch(40, third, `{"number": "(3333) 4444", "active": false}`); r.status != 200 {
			t.Errorf("update onto a duplicate while deactivating: %d %s; want 200", r.status, r.body)
		}
		if got := decodeAs[phoneJSON](t, s.get(40, second)); !got.Active {
			t.Errorf("the active phone changed: %+v", got)
		}
		// All phones are kept: 3, one of them active.
		if got := decodeAs[listJSON](t, s.list(40, "")); len(got.Items) != 3 {
			t.Errorf("list has %d phones; want all 3 ever created", len(got.Items))
		}
	})
}

func TestConcurrentUpdatesKeepEachOthersFields(t *testing.T) {
	forBackends(t, func(t *testing.T, b backend) {
		s := b.start(t, nil)
		const n = 10
		ids := make([]int64, n)
		for i := range ids {
			ids[i] = createdID(t, s.create(50, fmt.Sprintf(`{"number": "%d", "type": "MOBILE"}`, 100+i)))
		}
		c := s.api()
		var wg sync.WaitGroup
		for _, id := range ids {
			for _, change := range []api.PhoneUpdateRequest{
				{Type: api.NewOptPhoneType(api.PhoneTypeRESIDENTIAL)},
				{Extension: api.NewOptNilString("x9")},
			} {
				wg.Go(func() {
					res, err := c.PatchAccountsV1AccountsAccountIdPhonesPhoneId(context.Background(), &change,
						api.PatchAccountsV1AccountsAccountIdPhonesPhoneIdParams{AccountId: 50, PhoneId: id})
					if _, ok := res.(*api.PhoneHeaders); err != nil || !ok {
						t.Errorf("PATCH %+v: %T %+v, error %v; want the phone", change, res, res, err)
					}
				})
			}
		}
		wg.Wait()
		for _, id := range ids {
			res, err := c.GetAccountsV1AccountsAccountIdPhonesPhoneId(context.Background(),
				api.GetAccountsV1AccountsAccountIdPhonesPhoneIdParams{AccountId: 50, PhoneId: id})
			got := answerAs[*api.PhoneHeaders](t, res, err)
			if ext, _ := got.Response.Extension.Get(); got.Response.Type != api.PhoneTypeRESIDENTIAL || ext != "x9" || got.ETag != `"3"` {
				t.Errorf("phone %d: %+v ETag %s; want both changes and version 3", id, got.Response, got.ETag)
			}
		}
		s.events(3 * n)
	})
}
