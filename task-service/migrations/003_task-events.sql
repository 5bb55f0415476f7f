-- Up Migration
-- Live task updates: every create, update, completion and deletion of a task
-- is recorded here by the same statement that writes the task (so in the same
-- transaction), and announced on the task_events channel. Replicas read the
-- rows after their last seen id and push them to their subscribers; clients
-- resume from the last id they saw (SSE Last-Event-ID). Rows older than the
-- resumption window are pruned by the service (TASK_EVENTS_RETENTION_S).
CREATE TABLE task_events (
  id          bigserial   PRIMARY KEY,
  user_id     text        NOT NULL,
  type        text        NOT NULL CHECK (type IN ('created', 'updated', 'completed', 'deleted')),
  task        jsonb       NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now()
);

-- Replay and live reads: WHERE user_id = $1 AND id > $2 ORDER BY id.
CREATE INDEX task_events_user_id_id_idx ON task_events (user_id, id);
-- Pruning: WHERE created_at < now() - retention.
CREATE INDEX task_events_created_at_idx ON task_events (created_at);

-- A user's event ids must grow in commit order, or a reader that has seen id 11
-- would never see an id 10 that commits after it. So the id is taken under a
-- per-user lock held until commit: two writes of one user commit in id order.
-- (The column default has already drawn a value by then; it is replaced.)
-- Writes of different users do not wait for each other; readers keep a cursor
-- per user.
CREATE FUNCTION task_events_assign_id() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_advisory_xact_lock(hashtextextended(NEW.user_id, 7303));
  NEW.id := nextval('task_events_id_seq');
  RETURN NEW;
END
$$;

CREATE TRIGGER task_events_assign_id
  BEFORE INSERT ON task_events
  FOR EACH ROW EXECUTE FUNCTION task_events_assign_id();

-- Delivered at commit to every replica LISTENing (identical payloads in one
-- transaction are folded into one). The payload names the user, so a replica
-- with no subscriber for that user reads nothing.
CREATE FUNCTION task_events_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('task_events', 'u:' || NEW.user_id);
  RETURN NULL;
END
$$;

CREATE TRIGGER task_events_notify
  AFTER INSERT ON task_events
  FOR EACH ROW EXECUTE FUNCTION task_events_notify();

-- The account purge (migration 002) takes the user's events with their tasks,
-- in the same statement and under the same lock.
CREATE OR REPLACE FUNCTION purge_user_tasks(uid text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
  deleted bigint;
BEGIN
  PERFORM pg_advisory_xact_lock(hashtextextended(uid, 7302));
  INSERT INTO purged_users (user_id) VALUES (uid) ON CONFLICT (user_id) DO NOTHING;
  DELETE FROM tasks WHERE user_id = uid;
  GET DIAGNOSTICS deleted = ROW_COUNT;
  DELETE FROM task_events WHERE user_id = uid;
  RETURN deleted;
END
$$;
