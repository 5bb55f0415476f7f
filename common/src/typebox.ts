/**
 * TypeBox, for every Tollgate process: the schema builder, Value and Compile.
 * Imported as `@tollgate/common/typebox` (lint refuses 'typebox' itself in
 * sources), because the build bundles this module into one file
 * (common/scripts/bundle-typebox.mjs): TypeBox 1.x is about 680 ES modules,
 * and loading them one by one cost each process 31 MB of RSS and 12 MB of
 * live heap; bundled, 7 MB (Node 24, measured by importing both forms, and
 * with the gateway's /metrics after start). The code and its behaviour are
 * TypeBox's own; only how it is loaded changes.
 */
export * from 'typebox'
export { default } from 'typebox'
export { Value } from 'typebox/value'
export { Compile } from 'typebox/compile'
