-- The LLM's answers, shared by every node for llm.cache_ttl_s (issue 6).
-- `key` hashes the model and the messages; a row past expires_at is never
-- read and is deleted by the periodic cleanup.
CREATE TABLE llm_cache (
  key               text PRIMARY KEY,
  model             text NOT NULL,
  response          text NOT NULL,
  prompt_tokens     integer NOT NULL DEFAULT 0,
  completion_tokens integer NOT NULL DEFAULT 0,
  created_at        timestamptz NOT NULL DEFAULT now(),
  expires_at        timestamptz NOT NULL
);
CREATE INDEX llm_cache_expires_idx ON llm_cache (expires_at);
