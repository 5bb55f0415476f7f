/**
 * TypeBox, for every Tollgate process: the schema builder, Value and Compile.
 * Imported as `@tollgate/common/typebox` (lint refuses 'typebox' itself in
 * sources), because the build bundles this module into one file
 * (common/scripts/bundle-typebox.mjs): TypeBox 1.x is about 680 ES modules,
 * and loading them one by one cost a bare Node 24 process 31 MB of RSS
 * against 7 MB for the bundle, and the gateway 12-15 MB more heap after start
 * (its /metrics). The code and its behaviour are TypeBox's own; only how it
 * is loaded changes.
 */
export * from 'typebox'
export { default } from 'typebox'
export { Value } from 'typebox/value'
export { Compile } from 'typebox/compile'
