// Bundles each CLI into one file (dist/ctl.mjs, dist/pod.mjs): Node 20 spends most of a CLI's start-up
// resolving and loading hundreds of module files; one bundle starts in about half the time.
// better-sqlite3 stays outside (a native addon); templates and config are read from the package at run time.
import { build } from 'esbuild';

await build({
  entryPoints: { ctl: 'src/cli/ctl.ts', pod: 'src/cli/pod.ts' },
  outdir: 'dist',
  outExtension: { '.js': '.mjs' },
  bundle: true,
  splitting: true,
  chunkNames: 'chunks/[name]-[hash]',
  platform: 'node',
  format: 'esm',
  target: 'node20',
  sourcemap: true,
  external: ['better-sqlite3'],
  // Some bundled CommonJS packages call require(): give them one.
  banner: { js: "import { createRequire as __p2mCreateRequire } from 'node:module'; const require = __p2mCreateRequire(import.meta.url);" },
  logLevel: 'warning',
});
