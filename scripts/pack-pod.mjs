// The pod package: pipe2me-pod-<version>.tgz, what a pod installs with `npm install -g` (scripts/install-pod
// does that on Debian). A pod needs the pod CLI and nothing of the server, so the package is one esbuild
// bundle of src/cli/pod.ts with every npm package it uses inside (no dependencies: it installs offline),
// bin/pipe2me.js, the templates the pod renders (templates/pod/) and a package.json of its own.
//
//   node scripts/pack-pod.mjs [--out DIR]        (npm run pack:pod; DIR defaults to the project)
//
// The bundle is built here, from the sources, into a scratch directory: dist/ (the whole project's build,
// which the tests import while they run) is neither needed nor touched. The build fails if the pod's
// code pulls in a server module or a package only the server uses, or needs anything at run time that is
// not part of Node. The tarball is then installed into an empty prefix, offline, and its `pipe2me --help`
// and `pipe2me setup --help` run, before its path is printed (the last line on stdout).
import { build } from 'esbuild';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { isBuiltin } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { common } from './esbuild-options.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const NAME = 'pipe2me-pod';

// Source directories that only the server runs. src/daemons/process.ts is the exception: reading pid
// files and checking that a pid is alive, which the pod's runner does for its own pid file too.
const SERVER_SOURCES = ['src/state/', 'src/server/', 'src/api/', 'src/apply/', 'src/ca/', 'src/probe/', 'src/config/', 'src/daemons/'];
const SHARED_SOURCES = new Set(['src/daemons/process.ts']);
// npm packages only the server uses; better-sqlite3 could not even run from a bundle (a native addon).
const SERVER_PACKAGES = ['better-sqlite3', 'node-forge', 'chokidar', 'ajv', 'diff', 'js-yaml'];

class PackError extends Error {
  constructor(message) {
    super(message);
    this.name = 'PackError';
  }
}

function log(m) {
  process.stderr.write(`pack-pod: ${m}\n`);
}

function parseArgs(argv) {
  const o = { out: ROOT };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--out' && argv[i + 1]) o.out = path.resolve(argv[++i]);
    else throw new PackError(`unknown argument ${argv[i]} (usage: node scripts/pack-pod.mjs [--out DIR])`);
  }
  return o;
}

/** Runs a program (argv, timeout); a non-zero exit is a PackError showing what it printed. */
function run(file, args, opts) {
  const r = spawnSync(file, args, { encoding: 'utf8', timeout: opts.timeoutMs, cwd: opts.cwd, env: opts.env, maxBuffer: 16 * 1024 * 1024 });
  if (r.error) throw new PackError(`${file} ${args.join(' ')}: ${r.error.message}`);
  if (r.status !== 0) throw new PackError(`${file} ${args.join(' ')} exited ${r.status ?? r.signal}:\n${r.stdout}${r.stderr}`);
  return r.stdout;
}

/** npm runs with this Node first on PATH (npm's `#!/usr/bin/env node` must not find an older one), its cache in `scratch`. */
function npmEnv(scratch) {
  return {
    ...process.env,
    PATH: `${path.dirname(process.execPath)}${path.delimiter}${process.env.PATH ?? ''}`,
    npm_config_cache: path.join(scratch, 'npm-cache'),
    npm_config_update_notifier: 'false',
    npm_config_fund: 'false',
    npm_config_audit: 'false',
  };
}

/** What in the bundle is server code: source files, and server-only packages (each once), with what imports them. */
function serverInputs(metafile) {
  const importers = new Map();
  for (const [file, input] of Object.entries(metafile.inputs)) {
    for (const imp of input.imports) {
      if (!importers.has(imp.path)) importers.set(imp.path, []);
      importers.get(imp.path).push(file);
    }
  }
  const packageOf = (f) => SERVER_PACKAGES.find((p) => f.startsWith(`node_modules/${p}/`));
  const found = new Map();
  for (const f of Object.keys(metafile.inputs)) {
    const pkg = packageOf(f);
    const what = pkg ? `the package ${pkg}` : (SERVER_SOURCES.some((d) => f.startsWith(d)) && !SHARED_SOURCES.has(f) ? f : undefined);
    if (!what) continue;
    // For a package, only the importers outside it say how the pod reached it.
    const from = (importers.get(f) ?? []).filter((i) => !pkg || packageOf(i) !== pkg);
    found.set(what, [...(found.get(what) ?? []), ...from]);
  }
  return [...found].map(([what, from]) => (from.length ? `${what} (imported by ${[...new Set(from)].join(', ')})` : what));
}

/** Imports the bundle leaves to run time: anything but Node's own modules would have to be installed. */
function runtimeImports(metafile) {
  const out = new Set();
  for (const o of Object.values(metafile.outputs)) for (const imp of o.imports) if (imp.external && !isBuiltin(imp.path)) out.add(imp.path);
  return [...out];
}

async function bundle(pkgDir) {
  const r = await build({
    ...common,
    absWorkingDir: ROOT,
    // Nothing external: every package the pod uses goes into the bundle, so the package has no dependencies.
    external: [],
    entryPoints: ['src/cli/pod.ts'],
    outfile: path.join(pkgDir, 'dist', 'pod.mjs'),
    metafile: true,
    // Templates are not precompiled here: the pod renders two small service files, once, from
    // templates/pod/ (which the package ships); the server's templates stay out of the pod.
  });
  const bad = serverInputs(r.metafile);
  if (bad.length) throw new PackError(`the pod's code pulls in server code; a pod must not need it:\n  ${bad.join('\n  ')}`);
  const runtime = runtimeImports(r.metafile);
  if (runtime.length) throw new PackError(`the pod bundle imports at run time what a pod would have to install: ${runtime.join(', ')}`);
}

function writePackage(pkgDir) {
  const project = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
  fs.mkdirSync(path.join(pkgDir, 'bin'), { recursive: true });
  fs.copyFileSync(path.join(ROOT, 'bin', 'pipe2me.js'), path.join(pkgDir, 'bin', 'pipe2me.js'));
  fs.chmodSync(path.join(pkgDir, 'bin', 'pipe2me.js'), 0o755);
  fs.cpSync(path.join(ROOT, 'templates', 'pod'), path.join(pkgDir, 'templates', 'pod'), { recursive: true });
  const pkg = {
    name: NAME,
    version: project.version,
    description: 'The pipe2me pod client: publishes services of a machine behind NAT through a pipe2me server.',
    license: project.license,
    type: 'module',
    engines: project.engines,
    bin: { pipe2me: 'bin/pipe2me.js' },
    files: ['bin', 'dist', 'templates'],
  };
  fs.writeFileSync(path.join(pkgDir, 'package.json'), `${JSON.stringify(pkg, null, 2)}\n`);
  return pkg;
}

function pack(pkgDir, out, scratch) {
  fs.mkdirSync(out, { recursive: true });
  const json = JSON.parse(run('npm', ['pack', '--json', '--pack-destination', out, '--loglevel=error'], { cwd: pkgDir, env: npmEnv(scratch), timeoutMs: 120_000 }));
  const info = json[0];
  const files = info.files.map((f) => f.path).sort();
  const unexpected = files.filter((f) => !['package.json', 'bin/pipe2me.js', 'dist/pod.mjs'].includes(f) && !/^templates\/pod\/[\w.-]+\.hbs$/.test(f));
  if (unexpected.length) throw new PackError(`the tarball would hold more than the pod needs: ${unexpected.join(', ')}`);
  return { file: path.join(out, info.filename), files, size: info.size };
}

/** Installs the tarball into an empty prefix with no registry, and runs the installed `pipe2me`. */
function verify(tarball, scratch) {
  const prefix = path.join(scratch, 'prefix');
  fs.mkdirSync(prefix);
  const env = npmEnv(scratch);
  run('npm', ['install', '--global', '--offline', '--prefix', prefix, '--loglevel=error', tarball], { env, timeoutMs: 120_000 });
  const installed = path.join(prefix, 'lib', 'node_modules', NAME);
  if (fs.existsSync(path.join(installed, 'node_modules'))) throw new PackError(`installing ${tarball} installed dependencies: ${fs.readdirSync(path.join(installed, 'node_modules')).join(', ')}`);
  const bin = path.join(prefix, 'bin', 'pipe2me');
  const help = run(bin, ['--help'], { env, timeoutMs: 30_000 });
  if (!help.includes('Usage: pipe2me')) throw new PackError(`the installed pipe2me --help printed:\n${help}`);
  const setupHelp = run(bin, ['setup', '--help'], { env, timeoutMs: 30_000 });
  if (!setupHelp.includes('--server <url>')) throw new PackError(`the installed pipe2me setup --help printed:\n${setupHelp}`);
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const t0 = Date.now();
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'pipe2me-pack-pod-'));
  try {
    const pkgDir = path.join(scratch, 'package');
    await bundle(pkgDir);
    const pkg = writePackage(pkgDir);
    const t = pack(pkgDir, opts.out, scratch);
    verify(t.file, scratch);
    log(`${path.basename(t.file)}: ${(t.size / 1024).toFixed(0)} kB, ${t.files.join(' ')}; installs offline with no dependencies, `
      + `pipe2me --help and setup --help run (${pkg.name} ${pkg.version}, ${((Date.now() - t0) / 1000).toFixed(1)} s)`);
    process.stdout.write(`${t.file}\n`);
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
}

main().catch((e) => {
  process.stderr.write(`pack-pod: ${e instanceof PackError ? e.message : e.stack}\n`);
  process.exitCode = 1;
});
