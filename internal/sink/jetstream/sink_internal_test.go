package jetstream

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nkeys"
)

func TestCovers(t *testing.T) {
	tests := []struct {
		subjects []string
		prefix   string
		want     bool
	}{
		{[]string{"accounts.>"}, "accounts", true},
		{[]string{">"}, "accounts", true},
		{[]string{"*.>"}, "accounts", true},
		{[]string{"other.>", "accounts.>"}, "accounts", true},
		{[]string{"bank.>"}, "bank.accounts", true},
		{[]string{"bank.*.>"}, "bank.accounts", true},
		{[]string{"accounts.*.*"}, "accounts", false},
		{[]string{"accounts.audit.>"}, "accounts", false},
		{[]string{"accounts"}, "accounts", false},
		{[]string{"accountsx.>"}, "accounts", false},
		{[]string{"other.>"}, "accounts", false},
		{[]string{"bank.accounts"}, "bank.accounts", false},
		{[]string{"bank.other.>"}, "bank.accounts", false},
		{nil, "accounts", false},
	}
	for _, tt := range tests {
		if got := covers(tt.subjects, tt.prefix); got != tt.want {
			t.Errorf("covers(%q, %q): got %v; want %v", tt.subjects, tt.prefix, got, tt.want)
		}
	}
}

func TestCheckCreds(t *testing.T) {
	user, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, err := user.Seed()
	if err != nil {
		t.Fatal(err)
	}
	jwt := "eyJ0eXAiOiJKV1QifQ.eyJzdWIiOiJVIn0.c2ln"
	file := func(jwt, seed string) string {
		return "-----BEGIN NATS USER JWT-----\n" + jwt + "\n------END NATS USER JWT------\n\n" +
			"-----BEGIN USER NKEY SEED-----\n" + seed + "\n------END USER NKEY SEED------\n"
	}
	dir := t.TempDir()
	tests := []struct {
		name    string
		content string // "-" for no file
		ok      bool
	}{
		{"valid", file(jwt, string(seed)), true},
		{"missing file", "-", false},
		{"empty", "", false},
		{"no seed", file(jwt, "")[:strings.Index(file(jwt, ""), "-----BEGIN USER")], false},
		{"not a user seed", file(jwt, "SOAG3XWSKXUZRVC4NXKQMMR7XMOMOO6PIBHL5WHXFEW3Q3LK7KV3DK2DTE"), false},
		{"garbage", "password=hunter2\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "_")+".creds")
			if tt.content != "-" {
				if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			err := CheckCreds(path)
			if (err == nil) != tt.ok {
				t.Fatalf("CheckCreds: got error %v; want ok=%v", err, tt.ok)
			}
			if err != nil && (strings.Contains(err.Error(), string(seed)) || strings.Contains(err.Error(), "hunter2")) {
				t.Errorf("error %q holds the file's secrets", err)
			}
		})
	}
}
