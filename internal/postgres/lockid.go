package postgres

import (
	"encoding/binary"
	"hash/fnv"
	"slices"
)

// lockAccountsSQL takes the account locks $2, in the order given, under
// the class $1. An advisory lock takes no transaction id, so the
// transaction's id is assigned after the locks, at its first write.
const lockAccountsSQL = `SELECT pg_advisory_xact_lock($1, k) FROM unnest($2::integer[]) AS k`

// account names an account for its lock.
type account struct {
	tenant string
	id     int64
}

// accountLocks returns the lock keys of accounts, each once, sorted:
// transactions that take several take them in one order, so that none
// waits for another while holding a lock that one waits for. Two accounts
// may share a key, which only makes their writes take turns.
func accountLocks(accounts []account) []int32 {
	keys := make([]int32, 0, len(accounts))
	var id [8]byte
	for _, a := range accounts {
		h := fnv.New32a()
		h.Write([]byte(a.tenant))
		binary.BigEndian.PutUint64(id[:], uint64(a.id))
		h.Write([]byte{0})
		h.Write(id[:])
		keys = append(keys, int32(h.Sum32()))
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

// OrderLocks returns how pg_locks shows the locks that order the outbox,
// for the benchmark to sample how long transactions wait for them: the
// account locks are the advisory locks with objsubid 2 and classid
// accountClass; the outbox order lock of versions before migration 0005,
// which every create of every replica took in turn, is the one with
// objsubid 1, classid orderClassID and objid orderObjID (a bigint key's
// high and low 32 bits).
func OrderLocks() (accountClass, orderClassID, orderObjID uint32) {
	key := uint64(outboxOrderLockKey)
	return uint32(accountLockClass), uint32(key >> 32), uint32(key)
}
