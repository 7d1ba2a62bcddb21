package auth

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

func TestLoadOrCreateDevKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	first, err := LoadOrCreateDevKey(dir)
	if err != nil {
		t.Fatalf("LoadOrCreateDevKey (create): %v", err)
	}
	second, err := LoadOrCreateDevKey(dir)
	if err != nil {
		t.Fatalf("LoadOrCreateDevKey (reload): %v", err)
	}

	t.Run("same kid after reload", func(t *testing.T) {
		got, want := second.KeySet().Keys[0].KeyID, first.KeySet().Keys[0].KeyID
		if got != want || got == "" {
			t.Errorf("kid: got %q; want %q", got, want)
		}
	})
	t.Run("file mode 0600", func(t *testing.T) {
		info, err := os.Stat(filepath.Join(dir, "dev-signing-key.pem"))
		if err != nil {
			t.Fatalf("stat key: %v", err)
		}
		if got, want := info.Mode().Perm(), os.FileMode(0o600); got != want {
			t.Errorf("key mode: got %v; want %v", got, want)
		}
	})
	t.Run("dir mode 0700", func(t *testing.T) {
		info, err := os.Stat(dir)
		if err != nil {
			t.Fatalf("stat dir: %v", err)
		}
		if got, want := info.Mode().Perm(), os.FileMode(0o700); got != want {
			t.Errorf("dir mode: got %v; want %v", got, want)
		}
	})
	t.Run("key set", func(t *testing.T) {
		keys := first.KeySet().Keys
		if got, want := len(keys), 1; got != want {
			t.Fatalf("keys: got %d; want %d", got, want)
		}
		k := keys[0]
		if !k.IsPublic() || k.Algorithm != "RS256" || k.Use != "sig" || len(k.KeyID) != 43 {
			t.Errorf("key: got public=%v alg=%q use=%q kid=%q; want public RS256 sig with a 43-char thumbprint kid",
				k.IsPublic(), k.Algorithm, k.Use, k.KeyID)
		}
	})
}

func TestLoadOrCreateDevKeyRejectsBadFile(t *testing.T) {
	tests := []struct {
		name string
		data string
	}{
		{name: "not PEM", data: "hello"},
		{name: "wrong block", data: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"},
		{name: "corrupt key", data: "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "dev-signing-key.pem"), []byte(tt.data), 0o600); err != nil {
				t.Fatalf("write: %v", err)
			}
			if _, err := LoadOrCreateDevKey(dir); err == nil {
				t.Errorf("LoadOrCreateDevKey: got nil error; want one")
			}
		})
	}
}

func TestDevKeyMint(t *testing.T) {
	key, err := LoadOrCreateDevKey(t.TempDir())
	if err != nil {
		t.Fatalf("LoadOrCreateDevKey: %v", err)
	}
	clock := newFakeClock()
	v, err := NewVerifier(Config{Keys: key.KeySet(), Issuer: DevIssuer, Audience: DevAudience, Now: clock.Now})
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}

	base := Claims{Issuer: DevIssuer, Audience: DevAudience, Tenant: "TN-dev", Now: clock.Now()}
	tests := []struct {
		name    string
		claims  Claims
		advance time.Duration
		want    Principal
		wantErr string
	}{
		{
			name:   "tenant-wide",
			claims: base,
			want:   Principal{Tenant: "TN-dev", Roles: []string{}, Origin: "API"},
		},
		{
			name: "account-bound with all fields",
			claims: Claims{Issuer: DevIssuer, Audience: DevAudience, Subject: "dev", Tenant: "TN-dev",
				Email: "dev@example.com", Origin: "PORTAL", Account: 42, Roles: []string{"admin"}, Now: clock.Now()},
			want: Principal{Tenant: "TN-dev", Subject: "dev", Email: "dev@example.com", Roles: []string{"admin"},
				Origin: "PORTAL", AccountBound: true, Account: 42},
		},
		{
			name:    "default TTL is one hour",
			claims:  base,
			advance: time.Hour + time.Minute,
			wantErr: "token expired",
		},
		{
			name:    "custom TTL",
			claims:  Claims{Issuer: DevIssuer, Audience: DevAudience, Tenant: "TN-dev", TTL: 2 * time.Hour, Now: clock.Now()},
			advance: time.Hour + time.Minute,
			want:    Principal{Tenant: "TN-dev", Roles: []string{}, Origin: "API"},
		},
		{
			name:    "wrong audience",
			claims:  Claims{Issuer: DevIssuer, Audience: "other", Tenant: "TN-dev", Now: clock.Now()},
			wantErr: "token audience not accepted",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			token, err := key.Mint(tt.claims)
			if err != nil {
				t.Fatalf("Mint: %v", err)
			}
			clock.Advance(tt.advance)
			defer clock.Advance(-tt.advance)

			got, err := v.Verify(context.Background(), token)
			if tt.wantErr != "" {
				if !isAuthError(err, tt.wantErr) {
					t.Fatalf("Verify: got %v; want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Verify: got error %v; want nil", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Verify: got %+v; want %+v", got, tt.want)
			}
			if got.AccountBound && (!got.MayAccess(got.Account) || got.MayAccess(got.Account+1)) {
				t.Errorf("MayAccess: got wrong answer for bound account %d", got.Account)
			}
		})
	}
}

func TestDevKeyMintUsesCurrentTimeByDefault(t *testing.T) {
	key, err := LoadOrCreateDevKey(t.TempDir())
	if err != nil {
		t.Fatalf("LoadOrCreateDevKey: %v", err)
	}
	v, err := NewVerifier(Config{Keys: key.KeySet(), Issuer: DevIssuer, Audience: DevAudience})
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	token, err := key.Mint(Claims{Issuer: DevIssuer, Audience: DevAudience, Tenant: "TN-dev", Account: 7})
	if err != nil {
		t.Fatalf("Mint: %v", err)
	}
	p, err := v.Verify(context.Background(), token)
	if err != nil {
		t.Fatalf("Verify: got error %v; want nil", err)
	}
	if !p.AccountBound || p.Account != 7 {
		t.Errorf("Principal: got AccountBound=%v Account=%d; want true 7", p.AccountBound, p.Account)
	}
}
