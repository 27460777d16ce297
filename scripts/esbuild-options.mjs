// esbuild options every bundle of pipe2me shares (scripts/bundle.mjs for dist/, scripts/pack-pod.mjs for
// the pod package), so that both run the same code in the same way.
export const common = {
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  // pg-native is pg's optional libpq binding: pipe2me uses pg's own protocol code, so it is never loaded.
  external: ['better-sqlite3', 'pg-native'],
  // Some bundled CommonJS packages call require(): give them one.
  banner: { js: "import { createRequire as __p2mCreateRequire } from 'node:module'; const require = __p2mCreateRequire(import.meta.url);" },
  logLevel: 'warning',
};
