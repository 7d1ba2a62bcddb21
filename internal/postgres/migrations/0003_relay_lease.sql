-- The relay lease's epoch: each replica that takes the lease increments it,
-- and marking events sent checks it in the same statement, so that a relay
-- that lost the lease without noticing cannot mark anything (see Lease).

CREATE TABLE relay_lease (
  id BOOLEAN PRIMARY KEY DEFAULT true CONSTRAINT relay_lease_one_row CHECK (id),
  epoch BIGINT NOT NULL
);

INSERT INTO relay_lease (id, epoch) VALUES (true, 0);
