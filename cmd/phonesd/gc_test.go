package main

import (
	"runtime/debug"
	"testing"
)

// TestGCPercent checks that phonesd sets the collector's default only
// when the environment chose none.
func TestGCPercent(t *testing.T) {
	old := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(old) })
	tests := []struct {
		name string
		env  map[string]string
		want int
	}{
		{"unset", map[string]string{}, defaultGCPercent},
		{"set", map[string]string{"GOGC": "100"}, 100},
		{"set empty", map[string]string{"GOGC": ""}, 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			debug.SetGCPercent(100)
			setGCPercent(tt.env)
			if got := debug.SetGCPercent(100); got != tt.want {
				t.Errorf("GC percent: got %d; want %d", got, tt.want)
			}
		})
	}
}

// TestServerRunsTheCollectorAtItsDefault starts phonesd with no GOGC and
// reads the collector's setting from its own /metrics.
func TestServerRunsTheCollectorAtItsDefault(t *testing.T) {
	old := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(old) })
	s := start(t, nil)
	_, families := scrape(t, s.base+"/metrics")
	f, ok := families["go_gc_gogc_percent"]
	if !ok {
		t.Fatal("no go_gc_gogc_percent in /metrics")
	}
	if got := f.value(nil); got != defaultGCPercent {
		t.Errorf("go_gc_gogc_percent = %v; want %d", got, defaultGCPercent)
	}
}
