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
