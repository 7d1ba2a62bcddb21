package main

import (
	"bytes"
	"context"
	"testing"
)

// TestHealthcheck runs phonesd healthcheck against a running phonesd, and
// against an address where nothing listens.
func TestHealthcheck(t *testing.T) {
	s := start(t, nil)
	env := map[string]string{"PHONES_ADDR": s.base[len("http://"):], "PHONES_DATA_DIR": s.dataDir}
	if err := run(context.Background(), []string{"phonesd", "healthcheck"}, env, &bytes.Buffer{}, &bytes.Buffer{}); err != nil {
		t.Errorf("healthcheck of a running phonesd: %v; want nil", err)
	}
	env["PHONES_ADDR"] = freeAddr(t)
	if err := run(context.Background(), []string{"phonesd", "healthcheck"}, env, &bytes.Buffer{}, &bytes.Buffer{}); err == nil {
		t.Errorf("healthcheck of an address where nothing listens: nil; want an error")
	}
}
