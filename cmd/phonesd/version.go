package main

import (
	"errors"
	"fmt"
	"io"
	"runtime/debug"
)

// buildStamp is what the Go toolchain stamped into the binary.
type buildStamp struct {
	module, goVersion string
	revision, time    string // "" without VCS information
	modified          bool
}

// readBuildStamp reads the binary's build information.
func readBuildStamp() (buildStamp, bool) {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return buildStamp{}, false
	}
	b := buildStamp{module: info.Main.Version, goVersion: info.GoVersion}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			b.revision = s.Value
		case "vcs.time":
			b.time = s.Value
		case "vcs.modified":
			b.modified = s.Value == "true"
		}
	}
	return b, true
}

// printVersion writes the module version and the VCS revision that the Go
// toolchain stamped into the binary. A build outside a git clone, or with
// -buildvcs=false, has no revision, and says so.
func printVersion(w io.Writer) error {
	b, ok := readBuildStamp()
	if !ok {
		return errors.New("version: this binary carries no build information")
	}
	revision := "revision unknown (built without VCS information)"
	if b.revision != "" {
		revision = "revision " + b.revision
		if b.time != "" {
			revision += ", committed " + b.time
		}
		if b.modified {
			revision += ", with uncommitted changes"
		}
	}
	_, err := fmt.Fprintf(w, "phonesd %s\n%s\nbuilt with %s\n", b.module, revision, b.goVersion)
	return err
}

// serviceVersion names this build in one line, for traces: the module
// version, and the revision when the build has it.
func serviceVersion() string {
	b, ok := readBuildStamp()
	if !ok {
		return "unknown"
	}
	if b.revision == "" {
		return b.module
	}
	return b.module + " " + b.revision
}
