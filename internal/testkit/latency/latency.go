// Package latency summarises durations in bounded memory, for the
// benchmark and the fault checker: a run of any length keeps a histogram of
// fixed size (HdrHistogram) instead of every sample.
package latency

import (
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Bounds of what a Summary tells apart: microseconds up to an hour, each
// within a thousandth of its value (three significant figures). A longer
// duration counts as an hour. The histogram takes about 190 KiB.
const (
	unit        = time.Microsecond
	highest     = time.Hour
	significant = 3
)

// Summary counts durations and answers their quantiles, each within a
// thousandth of the exact nearest-rank value, and their exact maximum. It
// is safe for concurrent use.
type Summary struct {
	mu  sync.Mutex
	h   *hdrhistogram.Histogram
	max time.Duration
}

// New returns an empty Summary.
func New() *Summary {
	return &Summary{h: hdrhistogram.New(1, int64(highest/unit), significant)}
}

// Record counts d; a negative d counts as 0.
func (s *Summary) Record(d time.Duration) {
	v := min(max(int64(d/unit), 0), int64(highest/unit))
	s.mu.Lock()
	defer s.mu.Unlock()
	// v is within the histogram's bounds, so recording cannot fail.
	_ = s.h.RecordValue(v)
	s.max = max(s.max, d)
}

// Count returns how many durations were recorded.
func (s *Summary) Count() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.h.TotalCount()
}

// Quantile returns the duration below or at which a fraction q (0 < q <= 1)
// of the durations fall, 0 when none was recorded. Quantile(1) is Max.
func (s *Summary) Quantile(q float64) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.h.TotalCount() == 0 {
		return 0
	}
	if q >= 1 {
		return s.max
	}
	return min(time.Duration(s.h.ValueAtQuantile(q*100))*unit, s.max)
}

// Max returns the longest duration recorded, exactly, 0 when none was.
func (s *Summary) Max() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.max
}
