package httpapi

import (
	"context"
	"errors"

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
		Audit: phone.Audit{
			CID:    routeOf(ctx).cid,
			Email:  p.Email,
			Roles:  p.Roles,
			Origin: p.Origin,
		},
	}
	if c, ok := params.XCustomerID.Get(); ok {
		in.CustomerID = &c
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
	case errors.As(err, &fe):
		return &oas.BadRequestError{Message: fe.Message, Field: fe.Field}, nil
	}
	h.s.log.ErrorContext(ctx, "create phone failed", "err", err)
	return &oas.PostAccountsV1AccountsAccountIdPhonesInternalServerError{Message: msgCreateFailed}, nil
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
