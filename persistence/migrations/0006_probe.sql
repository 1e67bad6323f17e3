-- The probe: a diagnostic entity kind ("probe/<id>") that operators and the
-- cluster tests use to check that a write through any node lands once, on
-- the node that owns the key.
CREATE TABLE probe_counters (
  id text PRIMARY KEY,
  value bigint NOT NULL,
  node_id text NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- Every activation of a probe entity, with where and when it ran: the
-- cluster tests check that no key was ever active on two nodes at once.
CREATE TABLE probe_activations (
  id bigserial PRIMARY KEY,
  key text NOT NULL,
  node_id text NOT NULL,
  activated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  passivated_at timestamptz
);
CREATE INDEX probe_activations_key ON probe_activations (key);
