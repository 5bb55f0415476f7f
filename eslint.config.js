// ESLint flat config: typescript-eslint's recommended rules over every workspace's
// sources and tests, the bench and the infra scripts. No stylistic rules.
// The non-type-checked set: most tests sit outside the workspaces' tsconfig
// projects, and type-aware linting of the whole tree is slow on a 2-core CI.
import js from '@eslint/js'
import globals from 'globals'
import tseslint from 'typescript-eslint'

export default tseslint.config(
  {
    ignores: ['**/node_modules/**', '**/dist/**', '.tap/**', 'coverage/**', '.tools/**', '.data/**', 'bench/results/**'],
  },
  js.configs.recommended,
  tseslint.configs.recommended,
  {
    languageOptions: {
      ecmaVersion: 2023,
      sourceType: 'module',
      globals: { ...globals.node },
    },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      // Destructuring a property out to drop it (`const { date: _d, ...rest } = h`) is how an object is copied without it.
      '@typescript-eslint/no-unused-vars': ['error', { ignoreRestSiblings: true }],
      // A variable assigned once but read earlier inside a callback (a closure set up before its value exists) stays `let`.
      'prefer-const': ['error', { ignoreReadBeforeAssign: true }],
    },
  },
  {
    // TypeBox is loaded as one bundled module (common/src/typebox.ts): importing the package itself would
    // load its ~680 modules again, 12 MB of heap a process.
    files: ['*/src/**/*.ts'],
    ignores: ['common/src/typebox.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [{ regex: '^typebox(/|$)', message: "import TypeBox from '@tollgate/common/typebox' (one bundled module; './typebox.js' inside common)" }],
        },
      ],
    },
  },
  {
    files: ['**/test/**', 'infra/compose-test/**', 'common/src/testing/**'],
    rules: {
      // Tests read parsed JSON bodies and a browser page's globals by path; the assertion is the type check.
      '@typescript-eslint/no-explicit-any': 'off',
    },
  },
)
