package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"path/filepath"

	"github.com/phonesd/phonesd/internal/auth"
	"github.com/phonesd/phonesd/internal/issuer"
)

// issuerCommand runs `phonesd issuer`, a token issuer for production mode
// on one machine: it serves the key set of its key until ctx ends. As
// `phonesd issuer token`, it prints a token signed with that key instead.
func issuerCommand(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) > 0 && args[0] == "token" {
		return issuerTokenCommand(args[1:], getenv, stdout)
	}
	addr, err := issuerFlags(args)
	if err != nil {
		return err
	}
	key, path, err := issuerKey(getenv)
	if err != nil {
		return err
	}
	is, err := issuer.Listen(key, addr)
	if err != nil {
		return fmt.Errorf("issuer: %w", err)
	}
	// No token here: this output often ends up in a log (a container's),
	// where a token would be anyone's who reads it.
	_, err = fmt.Fprintf(stdout, `phonesd issuer: serving the key set of %s at %s

Run phonesd in production mode against it with:

  PHONES_JWKS_URL=%s PHONES_JWT_ISSUER=%s PHONES_JWT_AUDIENCE=%s

A token, signed with this key (the same PHONES_DATA_DIR), when you need one:

  phonesd issuer token -tenant TN-1 -account 123   (-h: flags)

`, path, is.JWKSURL(), is.JWKSURL(), issuer.Name, issuer.Audience)
	if err != nil {
		return err
	}
	return is.Serve(ctx)
}

// issuerFlags parses the flags of phonesd issuer and returns the address
// to serve the key set on.
func issuerFlags(args []string) (string, error) {
	fs := flag.NewFlagSet("phonesd issuer", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8081", "listen address of the key set (phonesd takes an http key set only from a loopback host)")
	if err := fs.Parse(args); err != nil {
		return "", err
	}
	if fs.NArg() > 0 {
		return "", fmt.Errorf("issuer: unexpected argument %q (phonesd issuer -h lists the flags)", fs.Arg(0))
	}
	return *addr, nil
}

// issuerTokenCommand prints a token signed with the issuer's key.
func issuerTokenCommand(args []string, getenv func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("phonesd issuer token", flag.ContinueOnError)
	claims := claimFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	// The issuer's tokens are for a phonesd whose limit it cannot know: it
	// reads PHONES_JWT_MAX_TTL as phonesd does, its default when unset.
	maxTTL, err := newEnv(getenv).duration("PHONES_JWT_MAX_TTL")
	if err != nil {
		return err
	}
	c, err := claims(maxTTL)
	if err != nil {
		return err
	}
	key, _, err := issuerKey(getenv)
	if err != nil {
		return err
	}
	c.Issuer, c.Audience = issuer.Name, issuer.Audience
	return printToken(stdout, key, c)
}

// issuerKeyPath returns the path of the issuer's key in the data directory.
func issuerKeyPath(getenv func(string) string) (string, error) {
	// The issuer is not the service: of the service's configuration only
	// the data directory concerns it, read as the service reads it. The
	// rest may be set for the service (in a container image's environment,
	// say) and must not stop the issuer.
	cfg, err := loadConfig(func(name string) string {
		if name == "PHONES_DATA_DIR" {
			return getenv(name)
		}
		return ""
	})
	if err != nil {
		return "", err
	}
	return filepath.Join(cfg.dataDir, issuer.KeyFile), nil
}

// issuerKey loads the issuer's key from the data directory, creating it on
// first use, and returns it with its path.
func issuerKey(getenv func(string) string) (*auth.DevKey, string, error) {
	path, err := issuerKeyPath(getenv)
	if err != nil {
		return nil, "", err
	}
	key, err := auth.LoadOrCreateKeyFile(path)
	if err != nil {
		return nil, "", fmt.Errorf("issuer key: %w", err)
	}
	return key, path, nil
}
