package httpapi

import (
	"net/http"

	"phonesd/internal/httpapi/oas"
)

// routes is the whole HTTP surface. Three operational endpoints need no
// token; every other path is the API, routed by the server generated from the
// contract after the gate has run the contract's checks.
func (s *Server) routes() http.Handler {
	operational := map[string]http.HandlerFunc{
		"/healthz":      s.healthz,
		"/readyz":       s.readyz,
		"/openapi.json": s.openapi,
	}
	api := s.gate(map[string]operation{
		oas.PostAccountsV1AccountsAccountIdPhonesOperation: {
			params:  createParams,
			body:    func(b []byte) error { _, err := decodePhoneRequest(b); return err },
			failMsg: msgCreateFailed,
		},
		oas.GetAccountsV1AccountsAccountIdPhonesOperation: {
			params:  listParams,
			failMsg: msgListFailed,
		},
		oas.GetAccountsV1AccountsAccountIdPhonesPhoneIdOperation: {
			params:  phoneParams,
			failMsg: msgReadFailed,
		},
		oas.PatchAccountsV1AccountsAccountIdPhonesPhoneIdOperation: {
			params:  updateParams,
			body:    func(b []byte) error { _, err := decodePhoneUpdate(b); return err },
			failMsg: msgUpdateFailed,
		},
	}, s.oas)
	// Shedding runs before the gate, so that refusing costs no token check;
	// the operational endpoints below never pass through it.
	api = s.shed(api)
	return s.observe(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h, ok := operational[r.URL.Path]; ok {
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				w.Header().Set("Allow", "GET, HEAD")
				writeMessage(w, http.StatusMethodNotAllowed, msgMethodNotAllowed)
				return
			}
			routeOf(r.Context()).route = r.URL.Path
			h(w, r)
			return
		}
		api.ServeHTTP(w, r)
	}))
}
