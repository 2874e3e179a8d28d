// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import { builtinModules } from 'node:module';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'bench/results/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: { allowDefaultProject: ['eslint.config.js', 'test/fixtures/*.mjs'] }, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports' }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/no-floating-promises': 'error',
      // Public methods are async on purpose: a bad argument must reject, never throw synchronously.
      '@typescript-eslint/require-await': 'off',
      // Node built-ins are imported with the `node:` protocol.
      'no-restricted-imports': ['error', { paths: builtinModules.filter((m) => !m.startsWith('_')).map((name) => ({ name, message: `Import 'node:${name}' instead.` })) }],
    },
  },
  {
    // Public methods must reject, never throw synchronously, on bad input.
    files: ['src/**/*.ts', 'workers/**/*.ts'],
    rules: { '@typescript-eslint/promise-function-async': ['error', { checkArrowFunctions: false }] },
  },
  { files: ['eslint.config.js', 'test/fixtures/*.mjs'], ...tseslint.configs.disableTypeChecked },
);
