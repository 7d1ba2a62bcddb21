package httpapi

import (
	"context"
	"errors"
	"strconv"
	"time"

	"phonesd/internal/auth"
	"phonesd/internal/httpapi/oas"
	"phonesd/internal/phone"
)

// handler implements the operations of the contract. Generated types stop
// here: it speaks phone's types to the service.
type handler struct{ s *Server }

var _ oas.Handler = handler{}

// PostAccountsV1AccountsAccountIdPhones is Create phone.
func (h handler) PostAccountsV1AccountsAccountIdPhones(ctx context.Context, req *oas.PhoneRequest, params oas.PostAccountsV1AccountsAccountIdPhonesParams) (oas.PostAccountsV1AccountsAccountIdPhonesRes, error) {
	p, _ := principalOf(ctx)
	in := phone.CreateRequest{
		Tenant:    p.Tenant,
		AccountID: params.AccountId,
		Draft:     draftOf(req),
		Audit:     auditOf(ctx, p),
	}
	if c, ok := params.XCustomerID.Get(); ok {
		in.CustomerID = &c
	}
	if key, ok := params.IdempotencyKey.Get(); ok {
		in.Idempotency = &phone.Idempotency{
			Scope:       idempotencyScope(p, key),
			Fingerprint: routeOf(ctx).fingerprint,
			ExpiresAt:   time.Now().Add(h.s.idempotencyTTL),
		}
	}
	ctx, cancel := context.WithTimeout(ctx, h.s.storageTimeout)
	defer cancel()
	created, err := h.s.phones.Create(ctx, in)
	var fe *phone.FieldError
	switch {
	case err == nil:
		return &oas.PostAccountsV1AccountsAccountIdPhonesOK{ID: oas.PhoneID(created.ID)}, nil
	case errors.Is(err, phone.ErrDuplicate):
		return &oas.PostAccountsV1AccountsAccountIdPhonesConflict{Message: msgDuplicate}, nil
	case errors.Is(err, phone.ErrKeyInProgress):
		return &oas.PostAccountsV1AccountsAccountIdPhonesConflict{Message: msgKeyInProgress}, nil
	case errors.Is(err, phone.ErrKeyMismatch):
		return &oas.PostAccountsV1AccountsAccountIdPhonesUnprocessableEntity{Message: msgKeyMismatch}, nil
	case errors.As(err, &fe):
		return &oas.BadRequestError{Message: fe.Message, Field: fe.Field}, nil
	}
	h.s.log.ErrorContext(ctx, "create phone failed", "err", err)
	return &oas.PostAccountsV1AccountsAccountIdPhonesInternalServerError{Message: msgCreateFailed}, nil
}

// GetAccountsV1AccountsAccountIdPhones is List phones.
func (h handler) GetAccountsV1AccountsAccountIdPhones(ctx context.Context, params oas.GetAccountsV1AccountsAccountIdPhonesParams) (oas.GetAccountsV1AccountsAccountIdPhonesRes, error) {
	p, _ := principalOf(ctx)
	q := phone.ListQuery{Tenant: p.Tenant, AccountID: params.AccountId, Limit: params.Limit.Or(defaultLimit)}
	if v, ok := params.Active.Get(); ok {
		b := bool(v)
		q.Active = &b
	}
	if v, ok := params.Type.Get(); ok {
		t := phone.Type(v)
		q.Type = &t
	}
	if c, ok := params.Cursor.Get(); ok {
		after, err := q.AfterCursor(c)
		if err != nil {
			return &oas.BadRequestError{Message: "cursor is not a cursor of this list: start again without it", Field: "cursor"}, nil
		}
		q.AfterID = after
	}
	ctx, cancel := context.WithTimeout(ctx, h.s.storageTimeout)
	defer cancel()
	page, err := h.s.phones.List(ctx, q)
	if err != nil {
		h.s.log.ErrorContext(ctx, "list phones failed", "err", err)
		return &oas.GetAccountsV1AccountsAccountIdPhonesInternalServerError{Message: msgListFailed}, nil
	}
	out := &oas.PhoneList{Items: make([]oas.Phone, len(page.Phones))}
	for i, ph := range page.Phones {
		out.Items[i] = phoneOf(ph)
	}
	if page.NextAfterID != 0 {
		out.NextCursor.SetTo(q.Cursor(page.NextAfterID))
	}
	return out, nil
}

// GetAccountsV1AccountsAccountIdPhonesPhoneId is Get phone information.
func (h handler) GetAccountsV1AccountsAccountIdPhonesPhoneId(ctx context.Context, params oas.GetAccountsV1AccountsAccountIdPhonesPhoneIdParams) (oas.GetAccountsV1AccountsAccountIdPhonesPhoneIdRes, error) {
	p, _ := principalOf(ctx)
	ctx, cancel := context.WithTimeout(ctx, h.s.storageTimeout)
	defer cancel()
	ph, err := h.s.phones.Get(ctx, p.Tenant, params.AccountId, params.PhoneId)
	switch {
	case err == nil:
		return &oas.PhoneHeaders{ETag: etag(ph), Response: phoneOf(ph)}, nil
	case errors.Is(err, phone.ErrNotFound):
		return &oas.GetAccountsV1AccountsAccountIdPhonesPhoneIdNotFound{Message: msgPhoneNotFound}, nil
	}
	h.s.log.ErrorContext(ctx, "read phone failed", "err", err)
	return &oas.GetAccountsV1AccountsAccountIdPhonesPhoneIdInternalServerError{Message: msgReadFailed}, nil
}

// PatchAccountsV1AccountsAccountIdPhonesPhoneId is Update phone.
func (h handler) PatchAccountsV1AccountsAccountIdPhonesPhoneId(ctx context.Context, req *oas.PhoneUpdateRequest, params oas.PatchAccountsV1AccountsAccountIdPhonesPhoneIdParams) (oas.PatchAccountsV1AccountsAccountIdPhonesPhoneIdRes, error) {
	p, _ := principalOf(ctx)
	in := phone.UpdateRequest{
		Tenant:    p.Tenant,
		AccountID: params.AccountId,
		ID:        params.PhoneId,
		Patch:     patchOf(req),
		Audit:     auditOf(ctx, p),
	}
	if v, ok := params.IfMatch.Get(); ok {
		versions, err := parseIfMatch([]string{v})
		if err != nil {
			return &oas.BadRequestError{Message: err.Error(), Field: "If-Match"}, nil
		}
		in.IfMatch = versions
	}
	ctx, cancel := context.WithTimeout(ctx, h.s.storageTimeout)
	defer cancel()
	ph, err := h.s.phones.Update(ctx, in)
	var fe *phone.FieldError
	switch {
	case err == nil:
		return &oas.PhoneHeaders{ETag: etag(ph), Response: phoneOf(ph)}, nil
	case errors.Is(err, phone.ErrNotFound):
		return &oas.PatchAccountsV1AccountsAccountIdPhonesPhoneIdNotFound{Message: msgPhoneNotFound}, nil
	case errors.Is(err, phone.ErrPrecondition):
		return &oas.PatchAccountsV1AccountsAccountIdPhonesPhoneIdPreconditionFailed{Message: msgPrecondition}, nil
	case errors.Is(err, phone.ErrDuplicate):
		return &oas.PatchAccountsV1AccountsAccountIdPhonesPhoneIdConflict{Message: msgDuplicate}, nil
	case errors.As(err, &fe):
		return &oas.BadRequestError{Message: fe.Message, Field: fe.Field}, nil
	}
	h.s.log.ErrorContext(ctx, "update phone failed", "err", err)
	return &oas.PatchAccountsV1AccountsAccountIdPhonesPhoneIdInternalServerError{Message: msgUpdateFailed}, nil
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

// defaultLimit is a list page's size when the client names none.
const defaultLimit = 50

func auditOf(ctx context.Context, p auth.Principal) phone.Audit {
	return phone.Audit{CID: routeOf(ctx).cid, Email: p.Email, Roles: p.Roles, Origin: p.Origin}
}

// etag is the strong entity tag of a phone's version.
func etag(p phone.Phone) string {
	return `"` + strconv.FormatInt(p.Version, 10) + `"`
}

// phoneOf is the phone as the contract shows it: area and country codes as
// strings, times in UTC with milliseconds.
func phoneOf(p phone.Phone) oas.Phone {
	out := oas.Phone{
		ID:          oas.PhoneID(p.ID),
		AccountID:   p.AccountID,
		OrgID:       p.Tenant,
		Number:      p.Number,
		Type:        oas.PhoneType(p.Type),
		CountryCode: oas.NewNilString(strconv.FormatInt(int64(p.CountryCode), 10)),
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

func draftOf(req *oas.PhoneRequest) phone.Draft {
	number, typ := string(req.Number), string(req.Type)
	d := phone.Draft{Number: &number, Type: &typ}
	if v, ok := req.Active.Get(); ok {
		b := bool(v)
		d.Active = &b
	}
	if v, ok := req.AreaCode.Get(); ok {
		a := int64(v)
		d.AreaCode = &a
	}
	if v, ok := req.CountryCode.Get(); ok {
		c := int64(v)
		d.CountryCode = &c
	}
	if v, ok := req.Extension.Get(); ok {
		e := string(v)
		d.Extension = &e
	}
	return d
}

func patchOf(req *oas.PhoneUpdateRequest) phone.Patch {
	var p phone.Patch
	if v, ok := req.Number.Get(); ok {
		n := string(v)
		p.Number = &n
	}
	if v, ok := req.Type.Get(); ok {
		t := string(v)
		p.Type = &t
	}
	if v, ok := req.Active.Get(); ok {
		b := bool(v)
		p.Active = &b
	}
	if req.AreaCode.IsSet() {
		if v, ok := req.AreaCode.Get(); ok {
			a := int64(v)
			p.AreaCode = &a
		} else {
			p.ClearAreaCode = true
		}
	}
	if v, ok := req.CountryCode.Get(); ok {
		c := int64(v)
		p.CountryCode = &c
	}
	if req.Extension.IsSet() {
		if v, ok := req.Extension.Get(); ok {
			p.Extension = &v
		} else {
			p.ClearExtension = true
		}
	}
	return p
}

// securityHandler confirms what the gate established: the gate verifies the
// token before ogen decodes parameters, because the contract checks the token
// first, and leaves the principal in the context.
type securityHandler struct{}

func (securityHandler) HandleBearerAuth(ctx context.Context, _ oas.OperationName, _ oas.BearerAuth) (context.Context, error) {
	if _, ok := principalOf(ctx); !ok {
		return ctx, errors.New("request did not pass the gate")
	}
	return ctx, nil
}
