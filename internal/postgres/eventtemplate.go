package postgres

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/phonesd/phonesd/internal/phone"
)

// A create's phone id and time are chosen inside its transaction, after
// its locks, so that they follow commit order per account; yet the whole
// transaction is sent in one round trip, so its Phone created event, which
// carries both, is written by the server. phone.Creation.Write still
// encodes it, once with each of two sets of stand-in values: the bytes where
// the two encodings differ are the places of the id and the time, and what
// surrounds them is the event as the domain wrote it. The stand-ins differ
// in every digit and have the same length, so the two encodings align;
// a stand-in the phone's own fields happen to hold is the same in both and
// is left alone.
var (
	standInIDs   = [2]int64{1111111111111111111, 2222222222222222222}
	standInTimes = [2]time.Time{
		time.Date(1111, 11, 11, 11, 11, 11, 111e6, time.UTC),
		time.Date(2222, 2, 22, 22, 22, 22, 222e6, time.UTC),
	}
)

// eventTimeSQL formats the transaction's time $at as phone.TimestampLayout
// does; TestCreatedEventTemplate holds the two to the same text.
const eventTimeSQL = `to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`

// eventTemplate is an encoded event with two holes, one for the phone's id
// and one for the time, in the order idFirst says: head, the first hole,
// mid, the second hole, tail.
type eventTemplate struct {
	head, mid, tail []byte
	idFirst         bool
}

// createdTemplate returns what c writes, with stand-ins for the id and the
// time, and its event's payload as a template.
func createdTemplate(c phone.Creation) (phone.Write, eventTemplate, error) {
	var ws [2]phone.Write
	for i := range ws {
		w, err := c.Write(standInIDs[i], standInTimes[i])
		if err != nil {
			return phone.Write{}, eventTemplate{}, err
		}
		ws[i] = w
	}
	t, err := templateOf(ws[0].Event.Payload, ws[1].Event.Payload)
	if err != nil {
		return phone.Write{}, eventTemplate{}, fmt.Errorf("event %s: %w", c.EventID, err)
	}
	return ws[0], t, nil
}

// templateOf finds the holes where a and b, the encodings with the first and
// the second stand-ins, differ.
func templateOf(a, b []byte) (eventTemplate, error) {
	if len(a) != len(b) {
		return eventTemplate{}, errors.New("the stand-ins changed the event's length")
	}
	var holes [2]struct {
		at, end int
		id      bool
	}
	found := 0
	for i := 0; i < len(a); i++ {
		if a[i] == b[i] {
			continue
		}
		if found == len(holes) {
			return eventTemplate{}, errors.New("the event differs in more than the id and the time")
		}
		h := &holes[found]
		switch {
		case hasAt(a, b, i, strconv.AppendInt(nil, standInIDs[0], 10), strconv.AppendInt(nil, standInIDs[1], 10)):
			h.id, h.end = true, i+len(strconv.FormatInt(standInIDs[0], 10))
		case hasAt(a, b, i, []byte(standInTimes[0].Format(phone.TimestampLayout)), []byte(standInTimes[1].Format(phone.TimestampLayout))):
			h.end = i + len(phone.TimestampLayout)
		default:
			return eventTemplate{}, fmt.Errorf("the event differs at byte %d, outside the id and the time", i)
		}
		h.at = i
		i = h.end - 1
		found++
	}
	if found != len(holes) || holes[0].id == holes[1].id {
		return eventTemplate{}, errors.New("the event does not hold both the id and the time")
	}
	return eventTemplate{
		head:    a[:holes[0].at],
		mid:     a[holes[0].end:holes[1].at],
		tail:    a[holes[1].end:],
		idFirst: holes[0].id,
	}, nil
}

// hasAt reports whether a holds x and b holds y at offset i.
func hasAt(a, b []byte, i int, x, y []byte) bool {
	return bytes.HasPrefix(a[i:], x) && bytes.HasPrefix(b[i:], y)
}
