-- API keys. Only a hash of each secret is stored; `lookup` is the public
-- part a client sends, so finding a key is one index probe.

-- Bumped on every insert and revoke: a running server polls max(version) to
-- reload its key cache only when something changed. Writers serialise on an
-- advisory lock before taking a value (api_key_store.cpp), so versions
-- become visible in increasing order and a poller never skips one.
CREATE SEQUENCE api_keys_version_seq;

CREATE TABLE api_keys (
  id           bigserial PRIMARY KEY,
  name         text NOT NULL DEFAULT '',
  role         text NOT NULL
               CHECK (role IN ('admin', 'operator', 'partner', 'client')),
  partner_id   text,
  lookup       text NOT NULL UNIQUE,
  secret_hash  bytea NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  last_used_at timestamptz,
  revoked_at   timestamptz,
  version      bigint NOT NULL DEFAULT nextval('api_keys_version_seq'),
  CONSTRAINT api_keys_partner_id_iff_partner
    CHECK ((role = 'partner') = (partner_id IS NOT NULL))
);

ALTER SEQUENCE api_keys_version_seq OWNED BY api_keys.version;

CREATE INDEX api_keys_version_idx ON api_keys (version);
