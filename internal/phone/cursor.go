package phone

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"strconv"
)

// ErrBadCursor means a list cursor is malformed or was made for another
// tenant, account or set of filters.
var ErrBadCursor = errors.New("cursor is not valid for this list")

// A cursor is opaque to clients: the last id of the page it follows and a
// digest of the query it belongs to, so that it cannot be replayed against
// another account, tenant or filter. It needs no secret: a client who edits
// the id only skips around a list it may read anyway.
const cursorLen = 8 + 8

// Cursor returns the cursor that continues q after afterID.
func (q ListQuery) Cursor(afterID int64) string {
	var b [cursorLen]byte
	binary.BigEndian.PutUint64(b[:8], uint64(afterID))
	d := q.digest()
	copy(b[8:], d[:8])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// AfterCursor returns the id a cursor of q continues after, or ErrBadCursor.
func (q ListQuery) AfterCursor(cursor string) (int64, error) {
	b, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil || len(b) != cursorLen {
		return 0, ErrBadCursor
	}
	d := q.digest()
	if string(b[8:]) != string(d[:8]) {
		return 0, ErrBadCursor
	}
	id := int64(binary.BigEndian.Uint64(b[:8]))
	if id <= 0 {
		return 0, ErrBadCursor
	}
	return id, nil
}

func (q ListQuery) digest() [sha256.Size]byte {
	active, typ := "-", "-"
	if q.Active != nil {
		active = strconv.FormatBool(*q.Active)
	}
	if q.Type != nil {
		typ = string(*q.Type)
	}
	return sha256.Sum256([]byte(q.Tenant + "\x00" + strconv.FormatInt(q.AccountID, 10) + "\x00" + active + "\x00" + typ))
}
