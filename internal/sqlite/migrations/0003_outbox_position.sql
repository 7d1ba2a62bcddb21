-- The relay records what it delivered as one position, the last seq
-- delivered, instead of stamping every row: marking a batch then writes one
-- small row, not every event's page again, and the outbox rows are written
-- once, appended. Events up to the position are delivered; those after it
-- wait. An event stamped sent behind an unsent one (a broker may refuse one
-- message and take the next) counts as waiting again, and is delivered
-- again, which the sinks recognise.
--
-- traceparent is the W3C trace context of the change that wrote the event,
-- carried in the headers of the brokers that take headers.

CREATE TABLE outbox_position (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  delivered_seq INTEGER NOT NULL
);

INSERT INTO outbox_position (id, delivered_seq) VALUES (1, COALESCE(
  (SELECT MIN(seq) - 1 FROM outbox WHERE sent_at IS NULL),
  (SELECT MAX(seq) FROM outbox),
  0));

DROP INDEX outbox_pending;
ALTER TABLE outbox DROP COLUMN sent_at;
ALTER TABLE outbox ADD COLUMN traceparent TEXT;
