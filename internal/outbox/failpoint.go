//go:build failpoints

package outbox

import (
	"os"
	"strconv"
	"strings"
)

// failpoint exits the process at once, as abruptly as a kill, when
// PHONES_FAILPOINTS (a comma-separated list) names name, on the n-th time
// the caller reaches it: an entry "name" fires the first time, "name@n"
// the n-th, so that a process may serve a while before it dies. It exists
// only in builds tagged failpoints, for the tests that need a crash at an
// exact point.
func failpoint(name string, n int) {
	for entry := range strings.SplitSeq(os.Getenv("PHONES_FAILPOINTS"), ",") {
		point, at, counted := strings.Cut(entry, "@")
		if point != name {
			continue
		}
		want := 1
		if counted {
			if v, err := strconv.Atoi(at); err == nil {
				want = v
			}
		}
		if n >= want {
			os.Exit(FailpointExitCode)
		}
	}
}
