package latency

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// nearestRank is the exact quantile the Summary approximates.
func nearestRank(sorted []time.Duration, q float64) time.Duration {
	i := int(q*float64(len(sorted))+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func TestQuantilesWithinAThousandth(t *testing.T) {
	tests := []struct {
		name string
		draw func(r *rand.Rand) time.Duration
	}{
		{"1 to 100 ms", func(r *rand.Rand) time.Duration { return time.Duration(1+r.IntN(100)) * time.Millisecond }},
		{"long tail", func(r *rand.Rand) time.Duration { return time.Duration(r.ExpFloat64() * float64(3*time.Millisecond)) }},
		{"fast", func(r *rand.Rand) time.Duration { return time.Duration(50+r.IntN(500)) * time.Microsecond }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, 2))
			s := New()
			var all []time.Duration
			for range 20_000 {
				d := tt.draw(r)
				s.Record(d)
				all = append(all, d)
			}
			slices.Sort(all)
			if got := s.Count(); got != int64(len(all)) {
				t.Errorf("Count: got %d; want %d", got, len(all))
			}
			for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
				got, want := s.Quantile(q), nearestRank(all, q)
				// The histogram's unit is a microsecond.
				if diff := (got - want).Abs(); diff > want/1000+time.Microsecond {
					t.Errorf("Quantile(%v): got %v; want %v within a thousandth", q, got, want)
				}
			}
			if got, want := s.Max(), all[len(all)-1]; got != want || s.Quantile(1) != want {
				t.Errorf("Max: got %v, Quantile(1) %v; want %v", got, s.Quantile(1), want)
			}
		})
	}
}

func TestBounds(t *testing.T) {
	s := New()
	if s.Quantile(0.5) != 0 || s.Max() != 0 || s.Count() != 0 {
		t.Errorf("empty: got p50 %v, max %v, count %d; want zeros", s.Quantile(0.5), s.Max(), s.Count())
	}
	s.Record(-time.Second)
	s.Record(3 * time.Hour)
	if s.Count() != 2 {
		t.Errorf("Count: got %d; want 2: durations out of bounds count too", s.Count())
	}
	if got := s.Quantile(0.5); got != 0 {
		t.Errorf("p50 of a negative and a long duration: got %v; want 0", got)
	}
	if got := s.Max(); got != 3*time.Hour {
		t.Errorf("Max: got %v; want 3h, the exact maximum", got)
	}
}
