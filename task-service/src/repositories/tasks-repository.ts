/**
 * Every SQL statement the task-service runs. Each one is parameterised and
 * carries `user_id = $n`, so no code path can read or change another user's
 * rows; "not yours" and "does not exist" are the same null.
 */
import type pg from 'pg'
import { errors } from '@tollgate/common'
import { withDatabase } from '@tollgate/common/db'
import type { ListQuery, Task } from '../schemas.js'

interface TaskRow {
  id: string
  user_id: string
  title: string
  description: string | null
  completed: boolean
  created_at: Date
  updated_at: Date
}

export interface NewTask {
  title: string
  description: string | null
}

/** Absent keys leave the column as it is. */
export interface TaskChanges {
  title: string
  description?: string | null
  completed?: boolean
}

/** SQLSTATE raised by the trigger that refuses tasks of a purged account. */
const ACCOUNT_DELETED = 'TG001'

const COLUMNS = 'id, user_id, title, description, completed, created_at, updated_at'

/**
 * A write and its task_events row in one statement, so in one transaction:
 * the event exists exactly when the write committed (migration 003). `write`
 * is a data-modifying statement RETURNING COLUMNS; `type` an SQL expression
 * over its row.
 */
function withEvent(write: string, type: string): string {
  return `WITH t AS (${write}),
    e AS (INSERT INTO task_events (user_id, type, task) SELECT t.user_id, ${type}, to_jsonb(t) FROM t)
    SELECT ${COLUMNS} FROM t`
}

// Identifiers cannot be parameters: they come only from these fixed maps, keyed by validated enums.
const SORT_COLUMN: Record<ListQuery['sort'], string> = {
  created_at: 'created_at',
  updated_at: 'updated_at',
  title: 'title',
}
const DIRECTION: Record<ListQuery['order'], string> = { asc: 'ASC', desc: 'DESC' }
const STATUS_FILTER: Record<ListQuery['status'], string> = {
  all: '',
  pending: ' AND completed = false',
  completed: ' AND completed = true',
}

function toTask(row: TaskRow): Task {
  return {
    id: row.id,
    user_id: row.user_id,
    title: row.title,
    description: row.description,
    completed: row.completed,
    created_at: row.created_at.toISOString(),
    updated_at: row.updated_at.toISOString(),
  }
}

export function createTasksRepository(pool: pg.Pool) {
  // Unnamed statements only: PGlite shares one session between connections,
  // where named prepared statements collide.
  async function run(text: string, values: unknown[]): Promise<pg.QueryResult<TaskRow>> {
    try {
      return await withDatabase(() => pool.query<TaskRow>(text, values))
    } catch (err) {
      // Validation should stop bad data first; if some still reaches PostgreSQL
      // (data exception, CHECK), it is the client's input: 400, never 500.
      const code = (err as { code?: unknown }).code
      if (typeof code === 'string' && (code.startsWith('22') || code === '23514')) {
        throw errors.validation('Invalid value')
      }
      throw err
    }
  }

  return {
    async list(userId: string, q: ListQuery): Promise<Task[]> {
      const dir = DIRECTION[q.order]
      // id breaks ties (rows created in one statement share created_at), so paging never repeats or skips.
      const { rows } = await run(
        `SELECT ${COLUMNS} FROM tasks WHERE user_id = $1${STATUS_FILTER[q.status]}
         ORDER BY ${SORT_COLUMN[q.sort]} ${dir}, id ${dir} LIMIT $2 OFFSET $3`,
        [userId, q.limit, q.offset],
      )
      return rows.map(toTask)
    },

    /** Refused with 401 TOKEN_REVOKED for an account whose tasks were purged (see migration 002). */
    async create(userId: string, task: NewTask): Promise<Task> {
      try {
        const { rows } = await run(
          withEvent(`INSERT INTO tasks (user_id, title, description) VALUES ($1, $2, $3) RETURNING ${COLUMNS}`, `'created'`),
          [userId, task.title, task.description],
        )
        return toTask(rows[0]!)
      } catch (err) {
        if ((err as { code?: unknown }).code === ACCOUNT_DELETED) throw errors.tokenRevoked()
        throw err
      }
    },

    async get(userId: string, id: string): Promise<Task | null> {
      const { rows } = await run(`SELECT ${COLUMNS} FROM tasks WHERE id = $1 AND user_id = $2`, [id, userId])
      return rows[0] ? toTask(rows[0]) : null
    },

    async update(userId: string, id: string, changes: TaskChanges): Promise<Task | null> {
      const setDescription = changes.description !== undefined
      const { rows } = await run(
        withEvent(
          `UPDATE tasks
              SET title = $3,
                  description = CASE WHEN $4::boolean THEN $5::varchar ELSE description END,
                  completed = COALESCE($6::boolean, completed),
                  updated_at = now()
            WHERE id = $1 AND user_id = $2
           RETURNING ${COLUMNS}`,
          `'updated'`,
        ),
        [id, userId, changes.title, setDescription, setDescription ? changes.description : null, changes.completed ?? null],
      )
      return rows[0] ? toTask(rows[0]) : null
    },

    /**
     * One statement: concurrent toggles serialise on the row lock, none is lost.
     * Its event is a completion when it set completed, an update when it cleared it.
     */
    async toggleCompleted(userId: string, id: string): Promise<Task | null> {
      const { rows } = await run(
        withEvent(
          `UPDATE tasks SET completed = NOT completed, updated_at = now()
            WHERE id = $1 AND user_id = $2 RETURNING ${COLUMNS}`,
          `CASE WHEN t.completed THEN 'completed' ELSE 'updated' END`,
        ),
        [id, userId],
      )
      return rows[0] ? toTask(rows[0]) : null
    },

    /** The deleted event carries the task as it was. */
    async remove(userId: string, id: string): Promise<boolean> {
      const { rows } = await run(
        withEvent(`DELETE FROM tasks WHERE id = $1 AND user_id = $2 RETURNING ${COLUMNS}`, `'deleted'`),
        [id, userId],
      )
      return rows.length > 0
    },

    /**
     * Every task of one user (their account was deleted), their events (no
     * event is recorded for these deletions), and the record that refuses new
     * ones from now on, in one statement under the user's advisory
     * lock (migrations 002, 003), so no insert slips between the two. Idempotent.
     */
    async purgeUser(userId: string): Promise<number> {
      const { rows } = await withDatabase(() =>
        pool.query<{ deleted: string }>('SELECT purge_user_tasks($1)::text AS deleted', [userId]),
      )
      return Number(rows[0]!.deleted)
    },
  }
}

export type TasksRepository = ReturnType<typeof createTasksRepository>
