-- Up Migration
-- Signed-out tokens. seq gives the gateway a cursor to poll new revocations;
-- rows past expires_at can be purged (an expired token is refused anyway).
CREATE TABLE revoked_tokens (
  jti text PRIMARY KEY,
  user_id text NOT NULL,
  expires_at timestamptz NOT NULL,
  revoked_at timestamptz NOT NULL DEFAULT now(),
  seq bigserial UNIQUE
);
CREATE INDEX revoked_tokens_expires_at_idx ON revoked_tokens (expires_at);
