package main

import "runtime/debug"

// defaultGCPercent is the garbage collector's GOGC when the environment sets
// none. phonesd's live heap is small (about 15 MiB under load) and each
// request allocates a few kilobytes that die with it, so at Go's default of
// 100 the collector runs many times a second and takes about an eighth of
// the process's CPU under load. At 400 it runs a quarter as often, for a
// heap up to five times the live one (about 60-80 MiB under load).
// docs/operations.md says how to choose otherwise.
const defaultGCPercent = 400

// setGCPercent sets the collector to defaultGCPercent, unless GOGC in env
// chose already (the runtime read it at start).
func setGCPercent(env map[string]string) {
	if _, set := env["GOGC"]; !set {
		debug.SetGCPercent(defaultGCPercent)
	}
}
