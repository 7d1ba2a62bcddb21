package telemetry

import (
	"testing"
	"time"
)

// BenchmarkAnswered is what the metrics add to every request: its count
// and its duration. Beside the request path's tens of microseconds, it
// should stay well under one.
func BenchmarkAnswered(b *testing.B) {
	m := NewMetrics()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.Answered("createPhone", "POST", 400, 3*time.Millisecond)
		}
	})
}
