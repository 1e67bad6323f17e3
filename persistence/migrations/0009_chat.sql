-- Chat sessions and their turns (issue 6). A session belongs to one user
-- entity (`owner`, e.g. "user/api:12:u-77"); its id is what clients pass
-- back as session_id.
CREATE TABLE chat_sessions (
  id         text PRIMARY KEY,
  owner      text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  last_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX chat_sessions_owner_idx ON chat_sessions (owner, last_at);

CREATE TABLE chat_turns (
  id         bigserial PRIMARY KEY,
  session_id text NOT NULL REFERENCES chat_sessions (id) ON DELETE CASCADE,
  question   text NOT NULL,
  answer     text NOT NULL,
  language   text NOT NULL,
  source     text NOT NULL,
  confidence real NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX chat_turns_session_idx ON chat_turns (session_id, id);
