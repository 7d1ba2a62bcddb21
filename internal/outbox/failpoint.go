//go:build failpoints

package outbox

import (
	"os"
	"slices"
	"strings"
)

// failpointExitCode is the status a failpoint exits with, so that a test can
// tell it from a crash.
const failpointExitCode = 86

// failpoint exits the process at once, as abruptly as a kill, when
// PHONES_FAILPOINTS (a comma-separated list) names name. It exists only in
// builds tagged failpoints, for the tests that need a crash at an exact point.
func failpoint(name string) {
	if slices.Contains(strings.Split(os.Getenv("PHONES_FAILPOINTS"), ","), name) {
		os.Exit(failpointExitCode)
	}
}
