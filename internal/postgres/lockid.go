package postgres

// OutboxOrderLockID returns how pg_locks shows the outbox order lock, which
// every transaction that appends to the outbox takes: an advisory lock whose
// classid is the key's high 32 bits and objid its low 32 bits, objsubid 1
// (a bigint key). The benchmark samples it to measure how long
// transactions wait for the lock, the one point every replica's writes
// pass in turn.
func OutboxOrderLockID() (classid, objid uint32) {
	key := uint64(outboxOrderLockKey)
	return uint32(key >> 32), uint32(key)
}
