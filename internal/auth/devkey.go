package auth

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

const (
	// DevIssuer is the iss of tokens minted in development mode.
	DevIssuer = "phonesd-dev"
	// DevAudience is the aud of tokens minted in development mode.
	DevAudience = "phonesd"

	devKeyFile = "dev-signing-key.pem"
	devKeyBits = 2048
)

// DefaultTTL is the lifetime of a token whose Claims give none.
const DefaultTTL = time.Hour

// DevKey is a development signing key kept in the data directory.
type DevKey struct {
	public jose.JSONWebKey
	signer jose.Signer
}

// Claims are what Mint puts in a token.
type Claims struct {
	Issuer, Audience, Subject, Tenant, Email, Origin string
	Account                                          int64 // 0: not account-specific (emitted as "account_id" when > 0)
	Roles                                            []string
	TTL                                              time.Duration // 0 means DefaultTTL
	Now                                              time.Time     // zero means time.Now
}

// LoadOrCreateDevKey reads the RSA-2048 key in dir/dev-signing-key.pem, creating it (mode 0600, dir created 0700 if missing) on first use.
func LoadOrCreateDevKey(dir string) (*DevKey, error) {
	return LoadOrCreateKeyFile(filepath.Join(dir, devKeyFile))
}

// LoadOrCreateKeyFile is LoadOrCreateDevKey for a key file of any name, such
// as the local token issuer's.
func LoadOrCreateKeyFile(path string) (*DevKey, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		data, err = createDevKey(filepath.Dir(path), path)
	}
	if err != nil {
		return nil, err
	}
	key, err := parseDevKey(data)
	if err != nil {
		return nil, fmt.Errorf("load dev key %s: %w", path, err)
	}
	return newDevKey(key)
}

func createDevKey(dir, path string) ([]byte, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create dev key dir: %w", err)
	}
	key, err := rsa.GenerateKey(rand.Reader, devKeyBits)
	if err != nil {
		return nil, fmt.Errorf("generate dev key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode dev key: %w", err)
	}
	data := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})

	// O_EXCL so that two instances starting together agree on one key.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		data, err = os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read dev key: %w", err)
		}
		return data, nil
	}
	if err != nil {
		return nil, fmt.Errorf("create dev key: %w", err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		// A truncated key file would fail every later start.
		_ = os.Remove(path)
		return nil, fmt.Errorf("write dev key: %w", err)
	}
	return data, nil
}

func parseDevKey(data []byte) (*rsa.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	var parsed any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		parsed, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		parsed, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("unexpected PEM block %q", block.Type)
	}
	if err != nil {
		return nil, err
	}
	key, ok := parsed.(*rsa.PrivateKey)
	if !ok {
		return nil, errors.New("not an RSA key")
	}
	if key.N.BitLen() < minRSABits {
		return nil, fmt.Errorf("rsa key of %d bits is under %d", key.N.BitLen(), minRSABits)
	}
	return key, nil
}

// NewDevKey returns a fresh RSA-2048 signing key kept only in memory, for a
// program that plays the token issuer of a phonesd it starts (the benchmark,
// the fault checker).
func NewDevKey() (*DevKey, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("generate dev key: %w", err)
	}
	return newDevKey(key)
}

func newDevKey(key *rsa.PrivateKey) (*DevKey, error) {
	public := jose.JSONWebKey{Key: &key.PublicKey, Algorithm: string(jose.RS256), Use: "sig"}
	thumb, err := public.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("dev key thumbprint: %w", err)
	}
	public.KeyID = base64.RawURLEncoding.EncodeToString(thumb)

	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: public.KeyID}},
		(&jose.SignerOptions{}).WithType("JWT"),
	)
	if err != nil {
		return nil, fmt.Errorf("dev key signer: %w", err)
	}
	return &DevKey{public: public, signer: signer}, nil
}

// KeySet returns the public JWKS for the key (kid = the RFC 7638 thumbprint, base64url, alg RS256, use sig).
func (k *DevKey) KeySet() *jose.JSONWebKeySet {
	return &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{k.public}}
}

// mintClaims mirrors the claim names Verify reads.
type mintClaims struct {
	jwt.Claims
	Tenant  string   `json:"tenant_id,omitempty"`
	Email   string   `json:"email,omitempty"`
	Origin  string   `json:"origin,omitempty"`
	Roles   []string `json:"roles,omitempty"`
	Account *int64   `json:"account_id,omitempty"`
}

// Mint signs an RS256 token.
func (k *DevKey) Mint(c Claims) (string, error) {
	now := c.Now
	if now.IsZero() {
		now = time.Now()
	}
	ttl := c.TTL
	if ttl == 0 {
		ttl = DefaultTTL
	}
	mc := mintClaims{
		Claims: jwt.Claims{
			Issuer:   c.Issuer,
			Subject:  c.Subject,
			IssuedAt: jwt.NewNumericDate(now),
			Expiry:   jwt.NewNumericDate(now.Add(ttl)),
		},
		Tenant: c.Tenant,
		Email:  c.Email,
		Origin: c.Origin,
		Roles:  c.Roles,
	}
	if c.Audience != "" {
		mc.Audience = jwt.Audience{c.Audience}
	}
	if c.Account > 0 {
		mc.Account = &c.Account
	}
	token, err := jwt.Signed(k.signer).Claims(mc).Serialize()
	if err != nil {
		return "", fmt.Errorf("mint dev token: %w", err)
	}
	return token, nil
}
