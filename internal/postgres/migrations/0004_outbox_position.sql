-- The relay records what it delivered as one position, the last seq
-- delivered, kept beside the lease's epoch that fences it, instead of
-- stamping every row: marking a batch then updates one row instead of
-- writing a new version of every event (and its index entries), and the
-- outbox rows are written once. Events up to the position are delivered;
-- those after it wait. An event stamped sent behind an unsent one (a broker
-- may refuse one message and take the next) counts as waiting again, and
-- is delivered again, which the sinks recognise.
--
-- sent_at stays, unused, so that a replica of the previous version still
-- running during an upgrade can finish its statements; its deliveries may
-- then be repeated, which the sinks recognise too. Its index goes: it was
-- the cost.
--
-- traceparent is the W3C trace context of the change that wrote the event,
-- carried in the headers of the brokers that take headers.

ALTER TABLE relay_lease ADD COLUMN delivered_seq BIGINT NOT NULL DEFAULT 0;

UPDATE relay_lease SET delivered_seq = COALESCE(
  (SELECT MIN(seq) - 1 FROM outbox WHERE sent_at IS NULL),
  (SELECT MAX(seq) FROM outbox),
  0);

DROP INDEX outbox_pending;
ALTER TABLE outbox ADD COLUMN traceparent TEXT;
