package httpapi

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/phonesd/phonesd/api"
	"github.com/phonesd/phonesd/internal/auth"
	"github.com/phonesd/phonesd/internal/phone"
)

// The four operations of the contract. Each receives its request read and
// checked, calls the service within the storage timeout, and answers with
// the contract's types.

var createPhone = &operation{
	name:    "createPhone",
	failMsg: "Error creating phone number",
	does:    "create phone",
	params:  createParams,
	body: func(in *request, body []byte) error {
		var err error
		in.created, err = decodeCreate(body, in.principal.Tenant, in.account, in.customer)
		return err
	},
	do: doCreatePhone,
}

var listPhones = &operation{name: "listPhones", failMsg: "Error listing phones", does: "list phones", params: listPhonesParams, do: doListPhones}

var getPhone = &operation{name: "getPhone", failMsg: "Error reading phone", does: "read phone", params: phoneParams, do: doGetPhone}

var updatePhone = &operation{
	name:    "updatePhone",
	failMsg: "Error updating phone",
	does:    "update phone",
	params:  updateParams,
	body: func(in *request, body []byte) error {
		var err error
		in.patch, err = decodeUpdate(body)
		return err
	},
	do: doUpdatePhone,
}

// doCreatePhone is Create phone.
func doCreatePhone(s *Server, w http.ResponseWriter, ctx context.Context, in *request) error {
	c := phone.CreateRequest{Phone: in.created, Audit: in.audit()}
	if in.key != "" {
		c.Idempotency = &phone.Idempotency{
			Scope:       idempotencyScope(in.principal, in.key),
			Fingerprint: in.fingerprint,
			ExpiresAt:   time.Now().Add(s.idempotencyTTL),
		}
	}
	created, err := s.phones.Create(ctx, c)
	if err != nil {
		return err
	}
	writeOK(w, &api.PostAccountsV1AccountsAccountIdPhonesOK{ID: api.PhoneID(created.ID)})
	return nil
}

// doListPhones is List phones.
func doListPhones(s *Server, w http.ResponseWriter, ctx context.Context, in *request) error {
	l := in.list
	q := phone.ListQuery{Tenant: in.principal.Tenant, AccountID: in.account, Active: l.active, Type: l.typ, Limit: l.limit}
	if l.cursor != "" {
		after, err := q.AfterCursor(l.cursor)
		if err != nil {
			return badCursor()
		}
		q.AfterID = after
	}
	page, err := s.phones.List(ctx, q)
	if err != nil {
		return err
	}
	out := &api.PhoneList{Items: make([]api.Phone, len(page.Phones))}
	for i, ph := range page.Phones {
		out.Items[i] = phoneOf(ph)
	}
	if page.NextAfterID != 0 {
		out.NextCursor.SetTo(q.Cursor(page.NextAfterID))
	}
	writeOK(w, out)
	return nil
}

// doGetPhone is Get phone information.
func doGetPhone(s *Server, w http.ResponseWriter, ctx context.Context, in *request) error {
	ph, err := s.phones.Get(ctx, in.principal.Tenant, in.account, in.phoneID)
	if err != nil {
		return err
	}
	writePhone(w, ph)
	return nil
}

// doUpdatePhone is Update phone.
func doUpdatePhone(s *Server, w http.ResponseWriter, ctx context.Context, in *request) error {
	ph, err := s.phones.Update(ctx, phone.UpdateRequest{
		Tenant:    in.principal.Tenant,
		AccountID: in.account,
		ID:        in.phoneID,
		Patch:     in.patch,
		IfMatch:   in.ifMatch,
		Audit:     in.audit(),
	})
	if err != nil {
		return err
	}
	writePhone(w, ph)
	return nil
}

// idempotencyScope is an Idempotency-Key within the tenant and, for an
// account-specific token, its account: the keys of one caller can never
// reach another's answers. A newline cannot occur in a tenant (no control
// characters) nor in a key (printable ASCII), so the parts cannot blur.
func idempotencyScope(p auth.Principal, key string) string {
	account := "*"
	if p.AccountBound {
		account = strconv.FormatInt(p.Account, 10)
	}
	return p.Tenant + "\n" + account + "\n" + key
}

// writePhone answers a phone with its strong entity tag, its version.
func writePhone(w http.ResponseWriter, p phone.Phone) {
	h := w.Header()
	h.Set("ETag", `"`+strconv.FormatInt(p.Version, 10)+`"`)
	h.Set("Access-Control-Expose-Headers", "Etag")
	out := phoneOf(p)
	writeOK(w, &out)
}

// phoneOf is the phone as the contract shows it: area and country codes as
// strings, times in UTC with milliseconds.
func phoneOf(p phone.Phone) api.Phone {
	out := api.Phone{
		ID:          api.PhoneID(p.ID),
		AccountID:   p.AccountID,
		OrgID:       p.Tenant,
		Number:      p.Number,
		Type:        api.PhoneType(p.Type),
		CountryCode: api.NewNilString(strconv.FormatInt(int64(p.CountryCode), 10)),
		Active:      p.Active,
		CreatedAt:   p.CreatedAt.UTC().Format(phone.TimestampLayout),
		UpdatedAt:   p.UpdatedAt.UTC().Format(phone.TimestampLayout),
	}
	if p.CustomerID != nil {
		out.CustomerID.SetTo(*p.CustomerID)
	} else {
		out.CustomerID.SetToNull()
	}
	if p.AreaCode != nil {
		out.AreaCode.SetTo(strconv.FormatInt(int64(*p.AreaCode), 10))
	} else {
		out.AreaCode.SetToNull()
	}
	if p.Extension != nil {
		out.Extension.SetTo(*p.Extension)
	} else {
		out.Extension.SetToNull()
	}
	return out
}
