package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/phonesd/phonesd/internal/postgres"
	"github.com/phonesd/phonesd/internal/sink/jetstream"
	"github.com/phonesd/phonesd/internal/telemetry"
)

// reachTimeout bounds each answer phonesd check -connect waits for.
const reachTimeout = 10 * time.Second

// checkCommand runs phonesd check: it reads the configuration as a start
// does, stopping with the start's error where the start would stop before
// it creates, opens or reaches anything, and reaches nothing itself. With
// -connect it then reaches the database, the broker and the key set, and
// says which answered. Given issuer and its flags, it checks the issuer's
// configuration instead.
func checkCommand(ctx context.Context, args []string, env map[string]string, stdout io.Writer) error {
	fs := flag.NewFlagSet("phonesd check", flag.ContinueOnError)
	connect := fs.Bool("connect", false, "also reach the database, the broker and the key set, and say which answered")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: phonesd check [-connect] [issuer [flags]]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	getenv := func(name string) string { return env[name] }
	switch rest := fs.Args(); {
	case len(rest) == 0:
		return checkService(ctx, env, stdout, *connect)
	case rest[0] == "issuer":
		return checkIssuer(rest[1:], getenv, stdout, *connect)
	default:
		return fmt.Errorf("check: %q has no configuration to check: phonesd check checks the service's, phonesd check issuer [flags] the issuer's", rest[0])
	}
}

// checkService checks the service's configuration, and with connect
// reaches what it names.
func checkService(ctx context.Context, env map[string]string, stdout io.Writer, connect bool) error {
	cfg, err := loadConfig(func(name string) string { return env[name] })
	if err != nil {
		return err
	}
	log := slog.New(newLogHandler(stdout, cfg.logLevel, cfg.dev()))
	if err := checkStart(cfg, env, log); err != nil {
		return err
	}
	log.Info("configuration checked", "addr", cfg.addr, "database", cfg.databaseName(), "events", cfg.eventsName(),
		"key_set", cfg.keySetName(), "development_mode", cfg.dev())
	if !connect {
		return nil
	}
	return reach(ctx, cfg, log)
}

// checkStart is what a start checks before it creates, opens or reaches
// anything, and all that phonesd check does without -connect: it warns of
// unknown variables, of a database certificate left unchecked, of metrics
// beside an API that is not on loopback and of a data directory open to
// others, and returns
// the start's error for a data directory that cannot be one, a database
// URL that PostgreSQL would not take, the tracing variables, and the key
// set's URL.
func checkStart(cfg config, env map[string]string, log *slog.Logger) error {
	warnUnknownVariables(log, env)
	cfg.warnTransport(log)
	cfg.warnExposure(log)
	if err := inspectDataDir(cfg.dataDir, log); err != nil {
		return err
	}
	if cfg.postgresURL != "" {
		if err := postgres.Check(cfg.postgresURL); err != nil {
			return fmt.Errorf("PHONES_DATABASE_URL: %w", err)
		}
	}
	if err := telemetry.CheckTracing(func(name string) string { return env[name] }); err != nil {
		return err
	}
	// In development mode the verifier is the data directory's key, which
	// it would create.
	if !cfg.dev() {
		if _, _, err := newVerifier(cfg, log); err != nil {
			return err
		}
	}
	return nil
}

// reach asks the database, the broker and the key set of cfg for an
// answer, logs which answered, and returns an error naming those that did
// not.
func reach(ctx context.Context, cfg config, log *slog.Logger) error {
	var silent []string
	ask := func(what, where string, answer func(context.Context) (string, error)) {
		if answer == nil {
			log.Info(what+": nothing to reach", "at", where)
			return
		}
		ctx, cancel := context.WithTimeout(ctx, reachTimeout)
		defer cancel()
		detail, err := answer(ctx)
		if err != nil {
			log.Error(what+" did not answer", "at", where, "err", err)
			silent = append(silent, what)
			return
		}
		log.Info(what+" answered", "at", where, "detail", detail)
	}

	var database func(context.Context) (string, error)
	if cfg.postgresURL != "" {
		database = func(ctx context.Context) (string, error) {
			version, err := postgres.Ping(ctx, cfg.postgresURL)
			return "PostgreSQL " + version, err
		}
	}
	ask("database", cfg.databaseName(), database)

	var broker func(context.Context) (string, error)
	if cfg.nats.url != "" {
		broker = func(ctx context.Context) (string, error) {
			detail, err := jetstream.Probe(ctx, natsSinkConfig(cfg, log))
			return detail, sinkError(err)
		}
	}
	ask("broker", cfg.eventsName(), broker)

	var keySet func(context.Context) (string, error)
	if !cfg.dev() {
		keySet = func(ctx context.Context) (string, error) {
			v, _, err := newVerifier(cfg, log)
			if err != nil {
				return "", err
			}
			n, err := v.Fetch(ctx)
			return "usable keys: " + strconv.Itoa(n), err
		}
	}
	ask("key set", cfg.keySetName(), keySet)

	if len(silent) > 0 {
		return fmt.Errorf("check: no answer from the %s", strings.Join(silent, ", the "))
	}
	return nil
}

// checkIssuer checks the configuration of phonesd issuer given args, its
// flags: they and its data directory. The issuer reaches nothing.
func checkIssuer(args []string, getenv func(string) string, stdout io.Writer, connect bool) error {
	addr, err := issuerFlags(args)
	if err != nil {
		return err
	}
	path, err := issuerKeyPath(getenv)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "phonesd issuer: configuration checked: key %s, key set served on %s\n", path, addr)
	if err == nil && connect {
		_, err = fmt.Fprintln(stdout, "phonesd issuer: nothing to reach")
	}
	return err
}
