-- Up Migration
-- Accounts whose tasks were purged (the account was deleted; ids are never
-- reused). A task can never be created for one of them again, whatever token
-- reached us: the trigger refuses the insert.
--
-- The purge and every insert meet on one advisory lock per user: the purge
-- holds it exclusively while it records the user and deletes the tasks, an
-- insert holds it shared while it checks the record. So an insert either
-- commits before the purge deletes (and its task is deleted with the rest) or
-- runs after the purge committed (and sees the record). The check runs inside
-- the trigger function, after the lock is granted, so it reads a fresh
-- snapshot (READ COMMITTED), not the one the INSERT statement started with.
CREATE TABLE purged_users (
  user_id    text        PRIMARY KEY,
  purged_at  timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION refuse_tasks_of_purged_users() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_advisory_xact_lock_shared(hashtextextended(NEW.user_id, 7302));
  IF EXISTS (SELECT 1 FROM purged_users WHERE user_id = NEW.user_id) THEN
    RAISE EXCEPTION 'account deleted' USING ERRCODE = 'TG001';
  END IF;
  RETURN NEW;
END
$$;

CREATE TRIGGER tasks_refuse_purged_users
  BEFORE INSERT ON tasks
  FOR EACH ROW EXECUTE FUNCTION refuse_tasks_of_purged_users();

-- The purge, in one statement: lock, record, delete. Each command inside a
-- (volatile) function reads a fresh snapshot, so the DELETE sees every insert
-- that committed while the lock was awaited.
CREATE FUNCTION purge_user_tasks(uid text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
  deleted bigint;
BEGIN
  PERFORM pg_advisory_xact_lock(hashtextextended(uid, 7302));
  INSERT INTO purged_users (user_id) VALUES (uid) ON CONFLICT (user_id) DO NOTHING;
  DELETE FROM tasks WHERE user_id = uid;
  GET DIAGNOSTICS deleted = ROW_COUNT;
  RETURN deleted;
END
$$;
