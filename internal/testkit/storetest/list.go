package storetest

import (
	"context"
	"fmt"
	"testing"

	"github.com/phonesd/phonesd/internal/phone"
)

// listFixture is 25 phones of one account, of every type and both states,
// and phones of another account and another tenant whose ids fall among
// them.
type listFixture struct {
	mine, otherAccount, otherTenant []phone.Phone
}

func newListFixture(t *testing.T, s Store) listFixture {
	t.Helper()
	types := []phone.Type{phone.Residential, phone.Commercial, phone.Mobile}
	var f listFixture
	for i := range 25 {
		d := phone.Draft{
			Number: ptr(fmt.Sprintf("5000-%04d", i)),
			Type:   ptr(string(types[i%len(types)])),
			Active: ptr(i%2 == 0),
		}
		f.mine = append(f.mine, create(t, s, creation(t, tenant, account, nil, d)))
		if i%5 == 0 {
			f.otherAccount = append(f.otherAccount, create(t, s, creation(t, tenant, account+1, nil, d)))
			f.otherTenant = append(f.otherTenant, create(t, s, creation(t, "tenant-b", account, nil, d)))
		}
	}
	return f
}

// where returns the phones that keep accepts, in their order.
func where(phones []phone.Phone, keep func(p phone.Phone) bool) []phone.Phone {
	out := []phone.Phone{}
	for _, p := range phones {
		if keep(p) {
			out = append(out, p)
		}
	}
	return out
}

func phoneIDs(phones []phone.Phone) []int64 {
	out := make([]int64, len(phones))
	for i, p := range phones {
		out[i] = p.ID
	}
	return out
}

func listPhones(t *testing.T, s Store, q phone.ListQuery) []phone.Phone {
	t.Helper()
	got, err := s.ListPhones(context.Background(), q)
	if err != nil {
		t.Fatalf("ListPhones(%+v): got error %v; want nil", q, err)
	}
	if got == nil {
		t.Fatalf("ListPhones(%+v): got nil; want a slice, empty when nothing matches", q)
	}
	return got
}

func testListPhones(t *testing.T, s Store) {
	f := newListFixture(t, s)
	mine := f.mine
	last := mine[len(mine)-1]
	query := func(edit func(q *phone.ListQuery)) phone.ListQuery {
		q := phone.ListQuery{Tenant: tenant, AccountID: account, Limit: 100}
		if edit != nil {
			edit(&q)
		}
		return q
	}
	isActive := func(p phone.Phone) bool { return p.Active }
	ofType := func(typ phone.Type) func(p phone.Phone) bool {
		return func(p phone.Phone) bool { return p.Type == typ }
	}

	tests := []struct {
		name string
		q    phone.ListQuery
		want []phone.Phone
	}{
		{"every phone", query(nil), mine},
		{"limit", query(func(q *phone.ListQuery) { q.Limit = 10 }), mine[:10]},
		{"limit of one", query(func(q *phone.ListQuery) { q.Limit = 1 }), mine[:1]},
		{"after an id", query(func(q *phone.ListQuery) { q.AfterID, q.Limit = mine[4].ID, 3 }), mine[5:8]},
		{"after an id of another account", query(func(q *phone.ListQuery) { q.AfterID = f.otherAccount[2].ID }),
			where(mine, func(p phone.Phone) bool { return p.ID > f.otherAccount[2].ID })},
		{"active", query(func(q *phone.ListQuery) { q.Active = ptr(true) }), where(mine, isActive)},
		{"inactive", query(func(q *phone.ListQuery) { q.Active = ptr(false) }),
			where(mine, func(p phone.Phone) bool { return !p.Active })},
		{"type", query(func(q *phone.ListQuery) { q.Type = ptr(phone.Mobile) }), where(mine, ofType(phone.Mobile))},
		{"active and type", query(func(q *phone.ListQuery) { q.Active, q.Type = ptr(true), ptr(phone.Commercial) }),
			where(mine, func(p phone.Phone) bool { return p.Active && p.Type == phone.Commercial })},
		{"inactive and type", query(func(q *phone.ListQuery) { q.Active, q.Type = ptr(false), ptr(phone.Residential) }),
			where(mine, func(p phone.Phone) bool { return !p.Active && p.Type == phone.Residential })},
		{"filters, after an id and limit", query(func(q *phone.ListQuery) {
			q.Active, q.Type, q.AfterID, q.Limit = ptr(true), ptr(phone.Mobile), mine[2].ID, 2
		}), where(mine, func(p phone.Phone) bool { return p.Active && p.Type == phone.Mobile && p.ID > mine[2].ID })[:2]},
		{"after the last", query(func(q *phone.ListQuery) { q.AfterID = last.ID }), []phone.Phone{}},
		{"another account", query(func(q *phone.ListQuery) { q.AccountID = account + 1 }), f.otherAccount},
		{"another tenant", query(func(q *phone.ListQuery) { q.Tenant = "tenant-b" }), f.otherTenant},
		{"account without phones", query(func(q *phone.ListQuery) { q.AccountID = account + 2 }), []phone.Phone{}},
		{"tenant without phones", query(func(q *phone.ListQuery) { q.Tenant = "tenant-c" }), []phone.Phone{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := listPhones(t, s, tt.q)
			if g, w := phoneIDs(got), phoneIDs(tt.want); fmt.Sprint(g) != fmt.Sprint(w) {
				t.Fatalf("ids: got %v; want %v", g, w)
			}
			for i := range got {
				checkPhone(t, fmt.Sprintf("phone %d", got[i].ID), got[i], tt.want[i])
			}
		})
	}
}

// testListPhonesPaging walks each list page by page, as clients do, and
// checks that it meets every phone exactly once.
func testListPhonesPaging(t *testing.T, s Store) {
	f := newListFixture(t, s)
	tests := []struct {
		name   string
		active *bool
		typ    *phone.Type
		want   []phone.Phone
	}{
		{"no filter", nil, nil, f.mine},
		{"active", ptr(true), nil, where(f.mine, func(p phone.Phone) bool { return p.Active })},
		{"mobile", nil, ptr(phone.Mobile), where(f.mine, func(p phone.Phone) bool { return p.Type == phone.Mobile })},
		{"inactive commercial", ptr(false), ptr(phone.Commercial),
			where(f.mine, func(p phone.Phone) bool { return !p.Active && p.Type == phone.Commercial })},
	}
	const limit = 10
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := phone.ListQuery{Tenant: tenant, AccountID: account, Active: tt.active, Type: tt.typ, Limit: limit}
			var seen []phone.Phone
			for pages := 1; ; pages++ {
				if pages > len(f.mine)/limit+2 {
					t.Fatalf("pages: got more than %d; want the list to end", pages-1)
				}
				page := listPhones(t, s, q)
				if len(page) > limit {
					t.Fatalf("page %d: got %d phones; want at most %d", pages, len(page), limit)
				}
				seen = append(seen, page...)
				if len(page) < limit {
					break
				}
				q.AfterID = page[len(page)-1].ID
			}
			if got, want := phoneIDs(seen), phoneIDs(tt.want); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("ids over all pages: got %v; want %v", got, want)
			}
		})
	}
}
