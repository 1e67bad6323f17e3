-- Chat turns are written through the group-committed batch writer (issue
-- 6): each turn is one row with a natural key (session_id, turn_no) and
-- carries its owner, so a turn needs no session row written before it.
-- A session is the set of its turns; it belongs to the owner of its turns.
-- The columns for analytics (latency, cache hit, tokens, model) ride on
-- the same row: one write per ask.
ALTER TABLE chat_turns DROP CONSTRAINT chat_turns_session_id_fkey;
ALTER TABLE chat_turns
  ADD COLUMN owner             text,
  ADD COLUMN turn_no           integer,
  ADD COLUMN latency_ms        real    NOT NULL DEFAULT 0,
  ADD COLUMN llm_ms            real    NOT NULL DEFAULT 0,
  ADD COLUMN cache_hit         boolean NOT NULL DEFAULT false,
  ADD COLUMN prompt_tokens     integer NOT NULL DEFAULT 0,
  ADD COLUMN completion_tokens integer NOT NULL DEFAULT 0,
  ADD COLUMN model             text    NOT NULL DEFAULT '';
UPDATE chat_turns t SET owner = s.owner
  FROM chat_sessions s WHERE s.id = t.session_id;
UPDATE chat_turns t SET turn_no = n.rn
  FROM (SELECT id, row_number() OVER (PARTITION BY session_id ORDER BY id) AS rn
          FROM chat_turns) n
 WHERE n.id = t.id;
DELETE FROM chat_turns WHERE owner IS NULL;
ALTER TABLE chat_turns
  ALTER COLUMN owner SET NOT NULL,
  ALTER COLUMN turn_no SET NOT NULL;
DROP INDEX chat_turns_session_idx;
ALTER TABLE chat_turns
  ADD CONSTRAINT chat_turns_session_turn_key UNIQUE (session_id, turn_no);
-- Analytics read a time range; retention walks the old turns in order.
CREATE INDEX chat_turns_created_idx ON chat_turns (created_at, id);
DROP TABLE chat_sessions;
