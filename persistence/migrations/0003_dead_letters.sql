-- Work that failed after its last retry, kept for operators to read and
-- replay (GET /admin/dead-letters, POST /admin/dead-letters/{id}/replay).
-- A row holds what a replay needs to submit the job again: the sink that
-- ran it and the job as it was submitted (kind, payload, priority class,
-- sub-key and its window).
CREATE TABLE dead_letters (
  id            bigserial PRIMARY KEY,
  kind          text NOT NULL,
  sink          text NOT NULL,
  payload       text NOT NULL,
  last_error    text NOT NULL,
  attempts      integer NOT NULL CHECK (attempts >= 0),
  priority      smallint NOT NULL DEFAULT 0 CHECK (priority >= 0),
  sub_key       text NOT NULL DEFAULT '',
  window_calls  integer NOT NULL DEFAULT 0 CHECK (window_calls >= 0),
  window_ms     bigint NOT NULL DEFAULT 0 CHECK (window_ms >= 0),
  created_at    timestamptz NOT NULL DEFAULT now(), -- when it was submitted
  failed_at     timestamptz NOT NULL DEFAULT now(), -- when it was given up
  replayed_at   timestamptz,                        -- the last replay
  replay_count  integer NOT NULL DEFAULT 0
);

-- Listing newest first, optionally by kind, pages on id.
CREATE INDEX dead_letters_kind_id_idx ON dead_letters (kind, id);
