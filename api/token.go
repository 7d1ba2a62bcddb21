package api

import "context"

// Token is a SecuritySource that sends the same bearer token on every
// request, for a client whose token outlives it. A client that renews its
// tokens implements SecuritySource itself.
type Token string

// BearerAuth returns the token.
func (t Token) BearerAuth(context.Context, OperationName) (BearerAuth, error) {
	return BearerAuth{Token: string(t)}, nil
}
