package postgres

// eventTimeSQL formats the transaction's time, at, as phone.TimestampLayout
// does, for the hole of a phone.Template that holds the time;
// TestEventTimeSQL holds the two to the same text.
const eventTimeSQL = `to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`
