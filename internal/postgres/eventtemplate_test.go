package postgres

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/phonesd/phonesd/internal/phone"
	"github.com/phonesd/phonesd/internal/testkit/pgtest"
)

// TestCreatedEventTemplate stores creates, some of whose own fields look
// like ids and times, and checks that each event the server completed is
// the one the domain encodes for the phone stored.
func TestCreatedEventTemplate(t *testing.T) {
	ctx := context.Background()
	db := open(t, pgtest.Database(t), Options{})
	stamp := time.Now().UTC().Format(phone.TimestampLayout)
	big := int64(1111111111111111111)
	tests := []struct {
		name     string
		account  int64
		customer *int64
		audit    phone.Audit
	}{
		{"plain", 1, nil, phone.Audit{CID: "c"}},
		{"account and customer like ids", big, &big, phone.Audit{CID: "1"}},
		{"audit fields like times", 2, nil, phone.Audit{CID: stamp, Email: stamp, Origin: stamp}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := phone.New("tenant-a", tt.account, tt.customer, phone.Draft{Number: new("5550100"), Type: new("MOBILE")})
			if err != nil {
				t.Fatal(err)
			}
			c := phone.Creation{Phone: p, EventID: uuid.NewString(), Audit: tt.audit}
			stored, err := db.CreatePhone(ctx, c)
			if err != nil {
				t.Fatalf("CreatePhone: %v", err)
			}
			var payload []byte
			var createdAt time.Time
			if err := db.pool.QueryRow(ctx, "SELECT payload, created_at FROM outbox WHERE event_id = $1", c.EventID).Scan(&payload, &createdAt); err != nil {
				t.Fatal(err)
			}
			want, err := phone.CreatedEvent(c.EventID, stored, c.Audit)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(payload, want.Payload) {
				t.Errorf("payload:\ngot  %s\nwant %s", payload, want.Payload)
			}
			if !createdAt.Equal(stored.CreatedAt) {
				t.Errorf("event created_at: got %v; want the phone's %v", createdAt, stored.CreatedAt)
			}
		})
	}
}

// TestEventTimeSQL holds eventTimeSQL to phone.TimestampLayout.
func TestEventTimeSQL(t *testing.T) {
	ctx := context.Background()
	db := open(t, pgtest.Database(t), Options{})
	for _, at := range []time.Time{
		time.Date(2026, 1, 2, 3, 4, 5, 6e6, time.UTC),
		time.Date(1999, 12, 31, 23, 59, 59, 999e6, time.UTC),
		time.Date(2026, 7, 1, 0, 0, 0, 0, time.FixedZone("east", 5*3600)),
	} {
		var got string
		if err := db.pool.QueryRow(ctx, "SELECT "+eventTimeSQL+" FROM (SELECT $1::timestamptz AS at) AS c", at).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if want := at.UTC().Format(phone.TimestampLayout); got != want {
			t.Errorf("%v: got %s; want %s", at, got, want)
		}
	}
}
