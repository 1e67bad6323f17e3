-- Partners submit AI jobs; a partner API key is bound to one of them.
CREATE TABLE partners (
  id text PRIMARY KEY
    CHECK (id ~ '^[a-z0-9][a-z0-9_-]{0,63}$'),
  name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  monthly_budget_usd numeric(14, 2) CHECK (monthly_budget_usd >= 0),
  max_concurrency integer NOT NULL DEFAULT 4
    CHECK (max_concurrency BETWEEN 1 AND 1000),
  created_at timestamptz NOT NULL DEFAULT now()
);

-- A partner key must name a partner that exists.
ALTER TABLE api_keys
  ADD CONSTRAINT api_keys_partner_fk
  FOREIGN KEY (partner_id) REFERENCES partners (id);
