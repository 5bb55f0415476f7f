/**
 * What every Tollgate process shares. Database and migration helpers live at
 * '@tollgate/common/db' and '@tollgate/common/migrate' (the gateway never loads
 * pg), test utilities at '@tollgate/common/testing', the internal endpoints'
 * paths and schemas at '@tollgate/common/contracts'.
 */
export * from './errors.js'
export * from './config.js'
export * from './logging.js'
export * from './service.js'
export * from './server.js'
export * from './identity.js'
export * from './metrics.js'
export * from './scrape-time-metrics.js'
export * from './readiness.js'
export * from './service-token.js'
export * from './token-types.js'
export * from './json-body.js'
export * from './refused-upload.js'
export * from './auth-bodies.js'
export * from './tracing.js'
