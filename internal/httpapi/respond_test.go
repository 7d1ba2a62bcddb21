package httpapi

import (
	"errors"
	"fmt"
	"testing"

	"github.com/phonesd/phonesd/internal/phone"
)

func TestMessage(t *testing.T) {
	for _, o := range outcomes {
		wrapped := fmt.Errorf("create phone: %w", o.err)
		if got := Message(wrapped); got != o.message || got == "" {
			t.Errorf("Message(%v) = %q; want %q", wrapped, got, o.message)
		}
	}
	if got := Message(phone.ErrDuplicate); got == Message(phone.ErrKeyInProgress) {
		t.Errorf("the two 409s share the message %q; want them told apart", got)
	}
	if got := Message(errors.New("disk full")); got != "" {
		t.Errorf(`Message(disk full) = %q; want ""`, got)
	}
}
