//go:build !failpoints

package outbox

// failpoint does nothing outside builds tagged failpoints; the compiler
// removes its calls.
func failpoint(string, int) {}
