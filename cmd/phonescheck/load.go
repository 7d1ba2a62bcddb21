package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/phonesd/phonesd/api"
)

// numberSource hands out values unique within the run: phone numbers (14
// digits, 9 then a random run prefix then a counter) and update extensions.
type numberSource struct {
	prefix  string
	counter atomic.Int64
}

func newNumberSource() *numberSource {
	return &numberSource{prefix: strconv.Itoa(1000 + rand.IntN(9000))}
}

func (s *numberSource) number() string {
	return fmt.Sprintf("9%s%09d", s.prefix, s.counter.Add(1))
}

// extension returns an extension no other update of the run sets (at most
// 10 characters, as the contract allows).
func (s *numberSource) extension() string {
	return fmt.Sprintf("u%09d", s.counter.Add(1))
}

// pooled is an acknowledged phone that update workers may change: one
// worker at a time holds it, so that its versions follow one another.
type pooled struct {
	state   phoneState
	version int64
}

// load drives concurrent creates and updates against the replicas and
// records every one in the ledger.
type load struct {
	ledger      *ledger
	targets     []string // base URLs of the replicas
	tokens      tokenSet
	client      *client
	numbers     *numberSource
	runID       string
	concurrency int
	updaters    int

	pool chan pooled
	// recent holds bodies of acknowledged phones per account, for the
	// duplicates the load sends on purpose.
	recentMu sync.Mutex
	recent   map[tokenKey][]*createEntry

	stopping atomic.Bool
	wg       sync.WaitGroup
}

func newLoad(l *ledger, targets []string, tokens tokenSet, c *client, numbers *numberSource, runID string, concurrency int) *load {
	return &load{
		ledger:      l,
		targets:     targets,
		tokens:      tokens,
		client:      c,
		numbers:     numbers,
		runID:       runID,
		concurrency: concurrency,
		updaters:    max(1, concurrency/4),
		pool:        make(chan pooled, 4096),
		recent:      map[tokenKey][]*createEntry{},
	}
}

// start runs the create and update workers until stop. Worker i sends to
// replica i modulo the replicas.
func (l *load) start() {
	for i := range l.concurrency {
		l.wg.Go(func() { l.createLoop(i) })
	}
	for i := range l.updaters {
		l.wg.Go(func() { l.updateLoop(i) })
	}
}

// stop stops sending and waits for the requests in flight to end: none is
// cancelled, so each ends with its own answer or timeout.
func (l *load) stop() {
	l.stopping.Store(true)
	l.wg.Wait()
}

// backoff is a worker's pause after an unknown: a client of a crashed
// service retries, but does not spin.
func backoff(rng *rand.Rand) {
	time.Sleep(100*time.Millisecond + time.Duration(rng.IntN(100))*time.Millisecond)
}

func (l *load) createLoop(worker int) {
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(worker)))
	for !l.stopping.Load() {
		e := l.newCreate(rng, worker%len(l.targets))
		l.sendCreate(e)
		if e.Class == classUnknown {
			backoff(rng)
		}
	}
}

// newCreate makes the next create: mostly valid creates of fresh numbers,
// some with account-specific tokens, and a few duplicates, invalid bodies
// and account tokens used on another account, whose refusals must store
// nothing.
func (l *load) newCreate(rng *rand.Rand, replica int) *createEntry {
	e := l.validCreate(rng)
	e.Replica = replica
	switch r := rng.Float64(); {
	case r < 0.03:
		e.Intent = intentInvalid
		e.Draft.Type = "FAX"
	case r < 0.05:
		e.Intent = intentForbidden
		e.TokenAccount = int64(1 + rng.IntN(boundAccounts))
		if e.Account == e.TokenAccount {
			e.Account = e.TokenAccount%accountsPerTenant + 1
		}
	case r < 0.10:
		if src := l.recentPhone(rng, e.Tenant, e.Account); src != nil {
			e.Intent = intentDuplicate
			e.Draft, e.CustomerID = src.Draft, src.CustomerID
		}
	default:
		if e.Account <= boundAccounts && rng.Float64() < 0.3 {
			e.TokenAccount = e.Account
		}
	}
	if e.Intent != intentDuplicate {
		e.dropKeySometimes()
	}
	e.setBody()
	return e
}

// keylessShare is the share of the creates of fresh numbers sent without
// Idempotency-Key, as the seed's clients send them: the answers to those
// must be right without a key to lean on. Duplicates always carry one, and
// copy only acknowledged creates, so that a create without a key whose
// outcome is unknown is the only request that sent its number.
const keylessShare = 3 // in 10

// dropKeySometimes sends e without its key, for keylessShare creates in 10.
func (e *createEntry) dropKeySometimes() {
	if e.Seq%10 < keylessShare {
		e.NoKey, e.Key = true, ""
	}
}

// validCreate makes a valid create of a fresh number, with its own ledger
// sequence and idempotency key, on a random account of a random tenant;
// the caller sets its body once it has settled the draft.
func (l *load) validCreate(rng *rand.Rand) *createEntry {
	seq := l.ledger.nextSeq()
	e := &createEntry{
		Seq:     seq,
		Tenant:  tenants[rng.IntN(len(tenants))],
		Account: int64(1 + rng.IntN(accountsPerTenant)),
		Key:     fmt.Sprintf("check-%s-%d", l.runID, seq),
		Intent:  intentCreate,
	}
	l.freshDraft(rng, e)
	return e
}

// setBody records e's draft as the body the public client sends for it.
func (e *createEntry) setBody() {
	b, _ := e.Draft.request().MarshalJSON()
	e.Body = string(b)
}

var phoneTypes = []string{"MOBILE", "RESIDENTIAL", "COMMERCIAL"}

// freshDraft fills e with a valid body of a number no other request sends,
// its optional fields varied.
func (l *load) freshDraft(rng *rand.Rand, e *createEntry) {
	d := draft{Number: l.numbers.number(), Type: phoneTypes[rng.IntN(len(phoneTypes))]}
	if rng.Float64() < 0.7 {
		ac := 10 + rng.IntN(90)
		d.AreaCode = &ac
	}
	if rng.Float64() < 0.2 {
		cc := []int{1, 44, 55, 351}[rng.IntN(4)]
		d.CountryCode = &cc
	}
	if rng.Float64() < 0.2 {
		ext := "ext " + strconv.Itoa(rng.IntN(1000))
		d.Extension = &ext
	}
	if rng.Float64() < 0.1 {
		inactive := false
		d.Active = &inactive
	}
	if rng.Float64() < 0.3 {
		c := int64(1 + rng.IntN(1_000_000))
		e.CustomerID = &c
	}
	e.Draft = d
}

// recentPhone returns an acknowledged create of the account, or nil.
func (l *load) recentPhone(rng *rand.Rand, tenant string, account int64) *createEntry {
	l.recentMu.Lock()
	defer l.recentMu.Unlock()
	r := l.recent[tokenKey{tenant, account}]
	if len(r) == 0 {
		return nil
	}
	return r[rng.IntN(len(r))]
}

// sendCreate sends e and records it with its answer.
func (l *load) sendCreate(e *createEntry) {
	a := l.postCreate(l.targets[e.Replica], e)
	e.Start, e.Wrote, e.End = a.start, a.wrote, a.end
	e.attempt = a.attempt()
	l.ledger.addCreate(e)
	if e.Class != classOK || e.Intent != intentCreate {
		return
	}
	l.recentMu.Lock()
	k := tokenKey{e.Tenant, e.Account}
	if r := l.recent[k]; len(r) < 32 {
		l.recent[k] = append(r, e)
	} else {
		r[int(e.Seq)%len(r)] = e
	}
	l.recentMu.Unlock()
	select {
	case l.pool <- pooled{state: e.state(e.ID), version: 1}:
	default:
	}
}

// postCreate sends the create of e to base: the same request every time
// (the public client encodes an unchanged draft to the same bytes), so
// that a retry is the original with its Idempotency-Key.
func (l *load) postCreate(base string, e *createEntry) answer {
	params := api.PostAccountsV1AccountsAccountIdPhonesParams{AccountId: e.Account}
	if !e.NoKey {
		params.IdempotencyKey = api.NewOptString(e.Key)
	}
	if e.CustomerID != nil {
		params.XCustomerID = api.NewOptInt64(*e.CustomerID)
	}
	req := e.Draft.request()
	return l.client.call(base, l.tokens[tokenKey{e.Tenant, e.TokenAccount}], func(ctx context.Context, c *api.Client) error {
		_, err := c.PostAccountsV1AccountsAccountIdPhones(ctx, req, params)
		return err
	})
}

func (l *load) updateLoop(worker int) {
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(1000+worker)))
	replica := worker % len(l.targets)
	for !l.stopping.Load() {
		var p pooled
		select {
		case p = <-l.pool:
		default:
			time.Sleep(20 * time.Millisecond)
			continue
		}
		u := &updateEntry{
			Seq:     l.ledger.nextSeq(),
			PhoneID: p.state.ID,
			Tenant:  p.state.Tenant,
			Account: p.state.AccountID,
			IfMatch: p.version,
			Patch:   patch{Extension: l.numbers.extension()},
			Replica: replica,
		}
		if rng.Float64() < 0.25 {
			flip := !p.state.Active
			u.Patch.Active = &flip
		}
		a := l.sendUpdate(l.targets[replica], u)
		u.Start, u.Wrote, u.End = a.start, a.wrote, a.end
		u.attempt = a.attempt()
		u.ID = 0
		if u.Class == classOK {
			u.NewVersion = etagVersion(a.header)
		}
		l.ledger.addUpdate(u)
		switch {
		case u.Class == classOK:
			p.state, p.version = u.Patch.apply(p.state), u.NewVersion
			l.putBack(p)
		case u.Status == 409, u.Status == 429:
			l.putBack(p)
		case u.Class == classUnknown:
			// Its version is unknown now: the phone takes no more updates.
			backoff(rng)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (l *load) putBack(p pooled) {
	select {
	case l.pool <- p:
	default:
	}
}

// sendUpdate sends u's PATCH to base with u's If-Match.
func (l *load) sendUpdate(base string, u *updateEntry) answer {
	params := api.PatchAccountsV1AccountsAccountIdPhonesPhoneIdParams{
		AccountId: u.Account,
		PhoneId:   u.PhoneID,
		IfMatch:   api.NewOptString(`"` + strconv.FormatInt(u.IfMatch, 10) + `"`),
	}
	req := u.Patch.request()
	return l.client.call(base, l.tokens[tokenKey{u.Tenant, 0}], func(ctx context.Context, c *api.Client) error {
		_, err := c.PatchAccountsV1AccountsAccountIdPhonesPhoneId(ctx, req, params)
		return err
	})
}

// paced sends valid creates at rate a second, each in its own goroutine
// so that a slow answer does not delay the next send, until stop closes.
func (l *load) paced(rate float64, stop <-chan struct{}) {
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer tick.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		e := l.validCreate(rng)
		e.dropKeySometimes()
		e.setBody()
		wg.Go(func() { l.sendCreate(e) })
	}
}

// retryTries bounds the sends of one retry: a retry answered 429, 503 or
// not at all, though the service is back, is sent again after a pause.
const retryTries = 5

// resolve retries every unknown create with its key, and every unknown
// update with its If-Match, against base, and records the answers. An
// unknown create without a key is not sent again: the database says what
// became of it.
func (l *load) resolve(base string, creates []*createEntry, updates []*updateEntry) {
	work := make(chan func(), 64)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for f := range work {
				f()
			}
		})
	}
	for _, e := range creates {
		if e.Class != classUnknown || e.NoKey {
			continue
		}
		work <- func() {
			e.Retry = retry(func() answer { return l.postCreate(base, e) })
		}
	}
	for _, u := range updates {
		if u.Class != classUnknown {
			continue
		}
		work <- func() {
			var last answer
			u.Retry = retry(func() answer { last = l.sendUpdate(base, u); return last })
			u.Retry.ID = 0
			if u.Retry.Class == classOK {
				u.NewVersion = etagVersion(last.header)
			}
		}
	}
	close(work)
	wg.Wait()
}

// retry sends until the answer says something about the request: not a
// 429, a 503 or a transport error, at most retryTries times.
func retry(send func() answer) *attempt {
	var at attempt
	for i := range retryTries {
		a := send()
		at = a.attempt()
		at.Tries, at.At = i+1, a.start
		if at.Status != 429 && at.Status != 503 && at.Err == "" {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	return &at
}
