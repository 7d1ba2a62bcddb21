package httpapi_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"time"

	"github.com/phonesd/phonesd/api"
	"github.com/phonesd/phonesd/internal/auth"
	"github.com/phonesd/phonesd/internal/health"
	"github.com/phonesd/phonesd/internal/httpapi"
	"github.com/phonesd/phonesd/internal/phone"
	"github.com/phonesd/phonesd/internal/sqlite"
)

// Example creates a phone with an Idempotency-Key, then reads it back, on a
// phonesd the example runs on loopback (in development mode: a SQLite file
// and a key of its own). Against a deployed phonesd, only the URL and the
// token differ.
func Example() {
	base, token, stop := startPhonesd()
	defer stop()
	ctx := context.Background()

	c, err := api.NewClient(base, api.Token(token))
	if err != nil {
		log.Fatal(err)
	}
	created, err := c.PostAccountsV1AccountsAccountIdPhones(ctx, &api.PhoneRequest{
		Number:   "91234-5678",
		Type:     api.PhoneTypeMOBILE,
		AreaCode: api.NewOptAreaCode2(11),
	}, api.PostAccountsV1AccountsAccountIdPhonesParams{
		AccountId:      123,
		IdempotencyKey: api.NewOptString("order-42"),
	})
	if err != nil {
		log.Fatal(err)
	}
	ok, isOK := created.(*api.PostAccountsV1AccountsAccountIdPhonesOKHeaders)
	if !isOK {
		log.Fatalf("create answered %T", created)
	}

	got, err := c.GetAccountsV1AccountsAccountIdPhonesPhoneId(ctx, api.GetAccountsV1AccountsAccountIdPhonesPhoneIdParams{
		AccountId: 123,
		PhoneId:   int64(ok.Response.ID),
	})
	if err != nil {
		log.Fatal(err)
	}
	p := got.(*api.PhoneHeaders)
	fmt.Println(p.Response.Number, p.Response.Type, p.Response.CountryCode.Value, p.Response.Active, "ETag", p.ETag)
	// Output: 91234-5678 MOBILE 55 true ETag "1"
}

// startPhonesd runs phonesd's handler on loopback over a new SQLite file,
// and returns its URL, a token it accepts, and what stops it.
func startPhonesd() (url, token string, stop func()) {
	dir, err := os.MkdirTemp("", "phonesd-example-")
	if err != nil {
		log.Fatal(err)
	}
	db, err := sqlite.Open(context.Background(), filepath.Join(dir, "phones.db"), sqlite.Options{})
	if err != nil {
		log.Fatal(err)
	}
	key, err := auth.LoadOrCreateDevKey(dir)
	if err != nil {
		log.Fatal(err)
	}
	v, err := auth.NewVerifier(auth.Config{Keys: key.KeySet(), Issuer: auth.DevIssuer, Audience: auth.DevAudience})
	if err != nil {
		log.Fatal(err)
	}
	srv, err := httpapi.NewServer(httpapi.Config{
		Logger:   slog.New(slog.DiscardHandler),
		Phones:   phone.NewService(db, nil),
		Verifier: v,
		Health:   health.NewProbe(db),
		Spec:     api.Spec,
		// phonesd's defaults.
		StorageTimeout: 1500 * time.Millisecond,
		IdempotencyTTL: 24 * time.Hour,
	})
	if err != nil {
		log.Fatal(err)
	}
	token, err = key.Mint(auth.Claims{Issuer: auth.DevIssuer, Audience: auth.DevAudience, Tenant: "TN-example"})
	if err != nil {
		log.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	return ts.URL, token, func() {
		ts.Close()
		db.Close()
		os.RemoveAll(dir)
	}
}

// Example_updateAndList changes a phone only while it is still the version
// read (If-Match), shows that a change made from a stale version is
// refused, then lists the account's active phones.
func Example_updateAndList() {
	base, token, stop := startPhonesd()
	defer stop()
	ctx := context.Background()

	c, err := api.NewClient(base, api.Token(token))
	if err != nil {
		log.Fatal(err)
	}
	created, err := c.PostAccountsV1AccountsAccountIdPhones(ctx, &api.PhoneRequest{
		Number: "91234-5678",
		Type:   api.PhoneTypeMOBILE,
	}, api.PostAccountsV1AccountsAccountIdPhonesParams{AccountId: 123})
	if err != nil {
		log.Fatal(err)
	}
	id := int64(created.(*api.PostAccountsV1AccountsAccountIdPhonesOKHeaders).Response.ID)

	ofVersion1 := api.PatchAccountsV1AccountsAccountIdPhonesPhoneIdParams{
		AccountId: 123,
		PhoneId:   id,
		IfMatch:   api.NewOptString(`"1"`),
	}
	updated, err := c.PatchAccountsV1AccountsAccountIdPhonesPhoneId(ctx, &api.PhoneUpdateRequest{
		Extension: api.NewOptNilString("ramal 7"),
	}, ofVersion1)
	if err != nil {
		log.Fatal(err)
	}
	p := updated.(*api.PhoneHeaders)
	fmt.Println(p.Response.Number, p.Response.Extension.Value, "ETag", p.ETag)

	// Version 1 is gone: the change is refused, and nothing changes.
	stale, err := c.PatchAccountsV1AccountsAccountIdPhonesPhoneId(ctx, &api.PhoneUpdateRequest{
		Active: api.NewOptPhoneActive(false),
	}, ofVersion1)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%T\n", stale)

	listed, err := c.GetAccountsV1AccountsAccountIdPhones(ctx, api.GetAccountsV1AccountsAccountIdPhonesParams{
		AccountId: 123,
		Active:    api.NewOptAccountPhoneActiveQuery(api.AccountPhoneActiveQueryTrue),
	})
	if err != nil {
		log.Fatal(err)
	}
	for _, item := range listed.(*api.PhoneListHeaders).Response.Items {
		fmt.Println(item.Number, item.Extension.Value, item.Active)
	}
	// Output:
	// 91234-5678 ramal 7 ETag "2"
	// *api.PreconditionFailedHeaders
	// 91234-5678 ramal 7 true
}
