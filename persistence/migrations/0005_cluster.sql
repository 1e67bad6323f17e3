-- Cluster membership, the shard assignment's epoch and shard leases
-- (ARCHITECTURE.md §6, issue 5). The SQL that reads and writes these tables
-- is in persistence/cluster_store.cpp, which explains the rules; in short:
-- every time is the database's clock, never a node's, so nodes with skewed
-- clocks agree.

-- One row per node id. A restarted node keeps its row and gets the next
-- incarnation, so the incarnations of a node id only ever grow; a node that
-- left or was declared dead stays as 'dead' until it registers again.
CREATE TABLE cluster_nodes (
  node_id         text PRIMARY KEY,
  incarnation     bigint NOT NULL CHECK (incarnation > 0),
  http_address    text NOT NULL DEFAULT '',
  cluster_address text NOT NULL DEFAULT '',
  state           text NOT NULL
                  CHECK (state IN ('joining', 'active', 'draining', 'dead')),
  started_at      timestamptz NOT NULL DEFAULT now(),
  heartbeat_at    timestamptz NOT NULL DEFAULT now()
);

-- The epoch of the shard assignment: it grows, in the same transaction,
-- whenever the set of active nodes changes, so one epoch names one
-- assignment on every node. Its one row is also the lock that orders
-- membership changes.
CREATE TABLE cluster_state (
  id    int PRIMARY KEY CHECK (id = 1),
  epoch bigint NOT NULL CHECK (epoch > 0)
);
INSERT INTO cluster_state (id, epoch) VALUES (1, 1);

-- Who may serve each shard, until when. A row appears on the shard's first
-- lease and is then only updated: a released lease keeps its last holder
-- with expires_at = '-infinity'. (node_id, incarnation, epoch) is the
-- fencing token a holder's writes carry.
CREATE TABLE shard_leases (
  shard       int PRIMARY KEY CHECK (shard >= 0),
  node_id     text NOT NULL,
  incarnation bigint NOT NULL,
  epoch       bigint NOT NULL,
  expires_at  timestamptz NOT NULL
);
CREATE INDEX shard_leases_holder_idx ON shard_leases (node_id, incarnation);
