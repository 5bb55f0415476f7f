/**
 * Test utilities shared by the services' suites (not used at run time):
 * a throwaway PostgreSQL cluster to stop and start, fresh scratch databases,
 * services as real processes, timing helpers. Exported from the package as
 * the `testing` namespace: `import { testing } from '@tollgate/common'`.
 */
export * from './throwaway-postgres.js'
export * from './scratch-database.js'
export * from './processes.js'
export * from './timing.js'
export * from './signed-fetch.js'
export * from './migration-replicas.js'
export * from './database-restart.js'
export * from './migrate-cli.js'
export * from './write-then-read.js'
export * from './raw-connection.js'
