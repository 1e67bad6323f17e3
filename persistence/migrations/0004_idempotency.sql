-- Idempotency-Key (API.md): the first response to a create request, kept so
-- that a repeat with the same key gets the same answer instead of a second
-- effect. `scope` keeps keys of different clients apart (the gateway sets
-- it, e.g. to the API key's id); `request_hash` is the gateway's hash of the
-- request, so the same key with another body is told apart (409).
--
-- A row with status NULL is a request still running on some node. Rules in
-- persistence/idempotency_store.cpp: a 5xx or 429 answer deletes the row so
-- that a retry runs again; a pending row older than the lease is taken to
-- belong to a node that died and can be taken over; every row expires (24 h
-- after its answer by default) and idempotency_delete_expired removes it.
CREATE TABLE idempotency_keys (
  scope        text NOT NULL CHECK (length(scope) BETWEEN 1 AND 200),
  key          text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
  request_hash bytea NOT NULL,
  status       integer CHECK (status BETWEEN 100 AND 599),
  body         text,
  created_at   timestamptz NOT NULL DEFAULT now(), -- when the request began
  expires_at   timestamptz NOT NULL,
  PRIMARY KEY (scope, key)
);

CREATE INDEX idempotency_keys_expires_at_idx ON idempotency_keys (expires_at);
