-- Up Migration
-- Forward-only. user_id is the auth subject as opaque text (UUIDs from our
-- auth-service, 32-char ids from Better Auth); no foreign key, because the
-- users table belongs to the auth-service and may live in another database.
CREATE TABLE tasks (
  id          uuid          PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id     text          NOT NULL CHECK (char_length(user_id) BETWEEN 1 AND 128),
  title       varchar(200)  NOT NULL CHECK (title <> ''),
  description varchar(1000) NULL,
  completed   boolean       NOT NULL DEFAULT false,
  created_at  timestamptz   NOT NULL DEFAULT now(),
  updated_at  timestamptz   NOT NULL DEFAULT now()
);

-- Serves the default list (WHERE user_id = $1 ORDER BY created_at, id, in
-- either direction) without a sort, and every other per-user lookup by prefix.
CREATE INDEX tasks_user_id_created_at_id_idx ON tasks (user_id, created_at, id);
