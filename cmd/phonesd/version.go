package main

import (
	"errors"
	"fmt"
	"io"
	"runtime/debug"
)

// printVersion writes the module version and the VCS revision that the Go
// toolchain stamped into the binary. A build outside a git clone, or with
// -buildvcs=false, has no revision, and says so.
func printVersion(w io.Writer) error {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return errors.New("version: this binary carries no build information")
	}
	vcs := map[string]string{}
	for _, s := range info.Settings {
		vcs[s.Key] = s.Value
	}
	revision := "revision unknown (built without VCS information)"
	if r := vcs["vcs.revision"]; r != "" {
		revision = "revision " + r
		if t := vcs["vcs.time"]; t != "" {
			revision += ", committed " + t
		}
		if vcs["vcs.modified"] == "true" {
			revision += ", with uncommitted changes"
		}
	}
	_, err := fmt.Fprintf(w, "phonesd %s\n%s\nbuilt with %s\n", info.Main.Version, revision, info.GoVersion)
	return err
}
