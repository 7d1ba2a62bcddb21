package groupcommit

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// recorder commits by recording batch sizes; an input of -1 fails its batch
// before the commit, and -2 fails it with an unknown outcome, as a connection
// lost while committing does.
type recorder struct {
	mu      sync.Mutex
	batches [][]int
	delay   time.Duration
	// held, when set, keeps the commit of a batch holding heldInput
	// waiting until it is closed, after closing heldBegan: a writer kept
	// busy for as long as a test needs, with no clock in it.
	held, heldBegan chan struct{}
}

// heldInput is the input whose commit occupy holds.
const heldInput = 100

func (r *recorder) commit(ctx context.Context, batch []int) ([]int, error) {
	if r.held != nil && slices.Contains(batch, heldInput) {
		close(r.heldBegan)
		<-r.held
	}
	time.Sleep(r.delay) // a commit takes time, as an fsync does
	r.mu.Lock()
	r.batches = append(r.batches, append([]int(nil), batch...))
	r.mu.Unlock()
	out := make([]int, len(batch))
	for i, v := range batch {
		switch v {
		case -1:
			return nil, NotCommitted(errors.New("bad input"))
		case -2:
			return nil, errors.New("connection lost while committing")
		}
		out[i] = v * 10
	}
	return out, nil
}

func (r *recorder) snapshot() [][]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]int(nil), r.batches...)
}

// occupy keeps b's writer busy committing heldInput until release is
// called, so that the calls made meanwhile queue for the next batch. The
// held call's outcome is sent on done.
func occupy(t *testing.T, b *Batcher[int, int], r *recorder) (release func(), done <-chan error) {
	t.Helper()
	r.held, r.heldBegan = make(chan struct{}), make(chan struct{})
	errs := make(chan error, 1)
	go func() {
		_, err := b.Do(context.Background(), heldInput)
		errs <- err
	}()
	select {
	case <-r.heldBegan:
	case <-time.After(5 * time.Second):
		t.Fatal("the writer did not begin the held commit within 5s")
	}
	var once sync.Once
	release = func() { once.Do(func() { close(r.held) }) }
	t.Cleanup(release)
	return release, errs
}

// waitQueued waits until n calls are queued for b's next batch.
func waitQueued(t *testing.T, b *Batcher[int, int], n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); len(b.queue) < n; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d calls queued after 5s; want %d", len(b.queue), n)
		}
	}
}

func TestConcurrentCallsShareCommits(t *testing.T) {
	r := &recorder{delay: 5 * time.Millisecond}
	b := New(r.commit, Options{})
	defer b.Close()
	const n = 200
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := b.Do(context.Background(), i)
			if err != nil || got != i*10 {
				t.Errorf("Do(%d) = %d, %v; want %d", i, got, err, i*10)
			}
		}()
	}
	wg.Wait()
	if got := len(r.snapshot()); got >= n/2 {
		t.Errorf("%d commits for %d concurrent calls; want them batched", got, n)
	}
}

func TestLoneCallIsCommittedAtOnce(t *testing.T) {
	r := &recorder{}
	b := New(r.commit, Options{})
	defer b.Close()
	for i := range 5 {
		if got, err := b.Do(context.Background(), i); err != nil || got != i*10 {
			t.Fatalf("Do(%d) = %d, %v", i, got, err)
		}
	}
	if got := len(r.snapshot()); got != 5 {
		t.Errorf("%d commits for 5 sequential calls; want 5", got)
	}
}

func TestFailedBatchFailsOnlyTheBadInput(t *testing.T) {
	r := &recorder{}
	b := New(r.commit, Options{})
	defer b.Close()
	// Occupy the writer so that the next calls queue into one batch.
	release, _ := occupy(t, b, r)
	var wg sync.WaitGroup
	var failed, ok atomic.Int32
	for _, v := range []int{1, 2, -1, 3} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := b.Do(context.Background(), v)
			switch {
			case v == -1 && err != nil:
				failed.Add(1)
			case v != -1 && err == nil && got == v*10:
				ok.Add(1)
			default:
				t.Errorf("Do(%d) = %d, %v", v, got, err)
			}
		}()
	}
	waitQueued(t, b, 4)
	release()
	wg.Wait()
	if failed.Load() != 1 || ok.Load() != 3 {
		t.Errorf("%d failed, %d ok; want 1 and 3", failed.Load(), ok.Load())
	}
	if batches := r.snapshot(); len(batches) != 6 || len(batches[1]) != 4 {
		t.Errorf("commits %v; want [100], the four calls, then each of them alone", batches)
	}
}

// TestBatchOfUnknownOutcomeIsNotRetried checks that a batch whose commit
// may have happened is not retried call by call: each call gets the error.
func TestBatchOfUnknownOutcomeIsNotRetried(t *testing.T) {
	r := &recorder{}
	b := New(r.commit, Options{})
	defer b.Close()
	release, _ := occupy(t, b, r)
	var wg sync.WaitGroup
	var failed atomic.Int32
	for _, v := range []int{1, 2, -2, 3} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if got, err := b.Do(context.Background(), v); err == nil {
				t.Errorf("Do(%d) = %d, nil; want the batch's error", v, got)
				return
			}
			failed.Add(1)
		}()
	}
	waitQueued(t, b, 4)
	release()
	wg.Wait()
	if failed.Load() != 4 {
		t.Errorf("%d calls failed; want all 4", failed.Load())
	}
	batches := r.snapshot()
	if len(batches) != 2 || len(batches[1]) != 4 {
		t.Errorf("commits %v; want [100] then the four calls once, with no retry alone", batches)
	}
}

func TestCallerGoneBeforeCommitIsLeftOut(t *testing.T) {
	r := &recorder{}
	b := New(r.commit, Options{})
	defer b.Close()
	release, _ := occupy(t, b, r)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := b.Do(ctx, 2); !errors.Is(err, context.Canceled) {
		t.Fatalf("Do with a cancelled ctx: %v; want context.Canceled", err)
	}
	release()
	// Batches are committed in queue order: once a later call's commit is
	// done, the cancelled call has been committed or left out for good.
	if got, err := b.Do(context.Background(), 3); err != nil || got != 30 {
		t.Fatalf("Do(3) = %d, %v; want 30", got, err)
	}
	for _, batch := range r.snapshot() {
		for _, v := range batch {
			if v == 2 {
				t.Errorf("the cancelled call was committed")
			}
		}
	}
}

// TestWaitingCountsCallsUntilTheyReturn: the Waiting instrument counts
// the calls queued and the one being committed, and is 0 once all return.
func TestWaitingCountsCallsUntilTheyReturn(t *testing.T) {
	var waiting atomic.Int64
	r := &recorder{}
	b := New(r.commit, Options{Instruments: Instruments{Waiting: func(delta int) { waiting.Add(int64(delta)) }}})
	defer b.Close()
	release, held := occupy(t, b, r)
	if n := waiting.Load(); n != 1 {
		t.Errorf("waiting during the held commit: %d; want 1", n)
	}
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() {
			if _, err := b.Do(context.Background(), i); err != nil {
				t.Errorf("Do(%d): %v", i, err)
			}
		})
	}
	waitQueued(t, b, 3)
	if n := waiting.Load(); n != 4 {
		t.Errorf("waiting with three calls queued behind the held commit: %d; want 4", n)
	}
	release()
	wg.Wait()
	if err := <-held; err != nil {
		t.Errorf("the held call: %v", err)
	}
	if n := waiting.Load(); n != 0 {
		t.Errorf("waiting once every call returned: %d; want 0", n)
	}
}

func TestClose(t *testing.T) {
	b := New((&recorder{}).commit, Options{})
	b.Close()
	if _, err := b.Do(context.Background(), 1); !errors.Is(err, ErrClosed) {
		t.Errorf("Do after Close: %v; want ErrClosed", err)
	}
}

func TestBatchEndsAtTheEarliestDeadline(t *testing.T) {
	var sawDeadline atomic.Bool
	b := New(func(ctx context.Context, batch []int) ([]int, error) {
		d, ok := ctx.Deadline()
		sawDeadline.Store(ok && time.Until(d) < time.Second)
		<-ctx.Done() // a stuck disk
		return nil, ctx.Err()
	}, Options{Timeout: time.Minute})
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	began := time.Now()
	if _, err := b.Do(ctx, 1); err == nil {
		t.Fatal("Do succeeded on a stuck commit")
	}
	if took := time.Since(began); took > time.Second || !sawDeadline.Load() {
		t.Errorf("Do returned after %v, commit saw the caller's deadline: %v; want the commit bound by the caller's deadline", took, sawDeadline.Load())
	}
}
