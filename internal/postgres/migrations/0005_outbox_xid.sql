-- Events are delivered in the order of the transactions that wrote them,
-- by transaction id, instead of by seq under one lock that every create of
-- every replica took in turn. Each transaction that writes to the outbox
-- first takes the advisory locks of its accounts, before any write, so its
-- id (assigned at its first write) is larger than that of every earlier
-- transaction of those accounts: per account, transaction id order is
-- commit order. The relay reads only events whose transaction id is below
-- the oldest transaction still running, so none can later appear behind its
-- position, which becomes (xid, seq).
--
-- The outbox order lock is taken first, as the previous version's writers
-- take it: a writer that began before this migration has written its event
-- before the migration's own transaction id is assigned, and one that comes
-- after gets a larger id. The events already stored take this migration's
-- transaction id, so they keep their seq order, and the position keeps its
-- seq with this id: nothing delivered is delivered again, nothing waiting
-- is skipped.
--
-- delivered_seq is renamed: a relay of the previous version still running
-- during an upgrade, which reads by seq alone, then fails instead of
-- skipping events, and delivery waits for the upgrade to finish.

SELECT pg_advisory_xact_lock(8099846449764983810);

ALTER TABLE outbox ADD COLUMN xid xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX outbox_xid_seq ON outbox (xid, seq);

ALTER TABLE relay_lease RENAME COLUMN delivered_seq TO position_seq;
ALTER TABLE relay_lease ADD COLUMN position_xid xid8 NOT NULL DEFAULT '0';
UPDATE relay_lease SET position_xid = pg_current_xact_id();
