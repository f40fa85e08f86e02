'use strict';
// ESLint for both sides of the project: strict typescript-eslint rules (no `any`) on src-ts/,
// the recommended rules on the Node tooling, tests and the reference Router.
const js = require('@eslint/js');
const tseslint = require('typescript-eslint');
const globals = require('globals');

module.exports = tseslint.config(
  { ignores: ['dist-lua/**', 'dist-lua.next-*/**', 'nginx/**', 'node_modules/**', 'bench/results/**', 'coverage/**'] },
  {
    files: ['src-ts/**/*.ts', 'spec/types/**/*.ts'],
    extends: [js.configs.recommended, ...tseslint.configs.strict],
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      // TypeScriptToLua declarations use namespaces and `declare module`, and `import x =
      // require("cjson")` is how TSTL imports a Lua module that returns a single value.
      '@typescript-eslint/no-namespace': 'off',
      '@typescript-eslint/no-require-imports': 'off',
      // `$multi(...)` results and Lua APIs legitimately return nothing usable.
      '@typescript-eslint/no-invalid-void-type': 'off',
      'no-constant-condition': ['error', { checkLoops: false }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    files: ['**/*.js'],
    extends: [js.configs.recommended],
    languageOptions: { sourceType: 'commonjs', ecmaVersion: 2023, globals: { ...globals.node } },
    rules: {
      'no-unused-vars': ['error', { argsIgnorePattern: '^_', caughtErrors: 'none', ignoreRestSiblings: true }],
      'no-empty': ['error', { allowEmptyCatch: true }],
    },
  },
  {
    files: ['spec/**/*.js'],
    languageOptions: { globals: { ...globals.jest } },
  },
);
