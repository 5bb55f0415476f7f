-- Up Migration
-- Account deletion. A row of revoked_tokens with not_before set revokes every
-- token of its user issued before that time (the gateway reads it from the
-- feed). The outbox holds work for other services (purging the user's tasks),
-- written in the same transaction as the deletion so it is never lost, and
-- delivered with retries until it succeeds.
ALTER TABLE revoked_tokens ADD COLUMN not_before timestamptz NULL;

CREATE TABLE outbox (
  id bigserial PRIMARY KEY,
  kind text NOT NULL,
  payload jsonb NOT NULL,
  attempts integer NOT NULL DEFAULT 0,
  next_attempt_at timestamptz NOT NULL DEFAULT now(),
  last_error text NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  delivered_at timestamptz NULL
);
CREATE INDEX outbox_due_idx ON outbox (next_attempt_at) WHERE delivered_at IS NULL;
