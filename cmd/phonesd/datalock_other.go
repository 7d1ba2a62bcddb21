//go:build !(linux || darwin || freebsd || openbsd || netbsd || dragonfly || illumos)

package main

import (
	"errors"
	"os"
)

// tryLock reports that this system has no flock.
func tryLock(*os.File) (bool, error) { return false, errors.ErrUnsupported }
