-- The knowledge base the chat assistant answers from: documents an admin
-- writes (POST /api/v1/kb/documents), split into passages that retrieval
-- ranks. Deleting a document deletes its passages.
CREATE TABLE kb_documents (
  id         bigserial PRIMARY KEY,
  title      text NOT NULL CHECK (title <> ''),
  content    text NOT NULL CHECK (content <> ''),
  language   text NOT NULL CHECK (language IN ('uz', 'ru', 'en')),
  category   text NOT NULL DEFAULT 'general',
  created_at timestamptz NOT NULL DEFAULT now()
);

-- Listing newest first, optionally by language or category, pages on id.
CREATE INDEX kb_documents_language_id_idx ON kb_documents (language, id);
CREATE INDEX kb_documents_category_id_idx ON kb_documents (category, id);

CREATE TABLE kb_passages (
  document_id bigint NOT NULL REFERENCES kb_documents (id) ON DELETE CASCADE,
  ordinal     integer NOT NULL CHECK (ordinal >= 0),
  text        text NOT NULL,
  PRIMARY KEY (document_id, ordinal)
);

-- Grows with every change of the knowledge base, so that each node's
-- retrieval index can tell when to reload.
CREATE TABLE kb_state (
  id      integer PRIMARY KEY CHECK (id = 1),
  version bigint NOT NULL
);
INSERT INTO kb_state (id, version) VALUES (1, 0);
