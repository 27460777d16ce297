/**
 * Separate processes on one state store, as the CLI, the API and the probe are: each forked process opens
 * its own handle (test/helpers/store-worker.ts), and all start their job at the same moment.
 *
 * Processes rather than several handles in the test's own process: better-sqlite3 is synchronous, so a
 * handle whose BEGIN IMMEDIATE waits for the write lock (busy_timeout) blocks its whole event loop — in one
 * process the transaction holding the lock can then never finish, and every waiter times out. Between
 * processes the lock is waited for as in production.
 *
 * The worker is bundled once per test file with esbuild (better-sqlite3 and pg are imported from the
 * project's node_modules), into a temporary directory that closeStoreProcesses() removes.
 */
import { fork, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import type { StoreTarget } from '../../src/state/db.js';
import type { FromWorker, ToWorker, WorkerJob, WorkerResult } from './store-worker.js';

export type { WorkerJob, WorkerResult } from './store-worker.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '../..');
let bundle: Promise<{ dir: string; file: string }> | undefined;
const children = new Set<ChildProcess>();

function workerBundle(): Promise<{ dir: string; file: string }> {
  bundle ??= (async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'p2m-store-worker-'));
    // Bare imports from the bundle resolve through this link to the project's packages (better-sqlite3 is native).
    fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules'), 'dir');
    const file = path.join(dir, 'worker.mjs');
    await build({
      entryPoints: [path.join(HERE, 'store-worker.ts')], outfile: file, bundle: true, platform: 'node', format: 'esm',
      // Kysely bundled too (its many modules take longer to load than the rest); the native driver and pg are not.
      target: 'node20', external: ['better-sqlite3', 'pg'], logLevel: 'silent',
    });
    return { dir, file };
  })();
  return bundle;
}

export interface ConcurrentRun {
  results: WorkerResult[];
  /** From the go to the last job's end, ms. */
  wallMs: number;
}

/** Forks one process per job, each opens `target`; when all are ready they start together. */
export async function runInProcesses(target: StoreTarget, jobs: readonly WorkerJob[], timeoutMs = 60_000): Promise<ConcurrentRun> {
  const { file } = await workerBundle();
  const procs = jobs.map(() => {
    const c = fork(file, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], cwd: ROOT, env: { ...process.env } });
    children.add(c);
    c.once('exit', () => children.delete(c));
    return c;
  });
  const waitFor = <K extends FromWorker['kind']>(c: ChildProcess, kind: K) =>
    new Promise<Extract<FromWorker, { kind: K }>>((resolve, reject) => {
      const onMessage = (m: FromWorker) => {
        if (m.kind === kind) done(() => resolve(m as Extract<FromWorker, { kind: K }>));
        else if (m.kind === 'failed') done(() => reject(new Error(`store worker ${c.pid} failed: ${m.message}`)));
      };
      const onExit = (code: number | null, sig: string | null) => done(() => reject(new Error(`store worker ${c.pid} exited (${code ?? sig}) before "${kind}"`)));
      const timer = setTimeout(() => done(() => reject(new Error(`store worker ${c.pid}: no "${kind}" within ${timeoutMs} ms`))), timeoutMs);
      const done = (f: () => void) => {
        clearTimeout(timer);
        c.off('message', onMessage);
        c.off('exit', onExit);
        f();
      };
      c.on('message', onMessage);
      c.once('exit', onExit);
    });
  try {
    const ready = procs.map((c) => waitFor(c, 'ready'));
    procs.forEach((c, i) => c.send({ kind: 'start', target, job: jobs[i]! } satisfies ToWorker));
    await Promise.all(ready);
    const finished = procs.map((c) => waitFor(c, 'done'));
    const t0 = performance.now();
    for (const c of procs) c.send({ kind: 'go' } satisfies ToWorker);
    const results = (await Promise.all(finished)).map((m) => m.result);
    const wallMs = performance.now() - t0;
    await Promise.all(procs.map((c) => (c.exitCode !== null || c.signalCode !== null ? undefined : new Promise((r) => c.once('exit', r)))));
    return { results, wallMs };
  } finally {
    for (const c of procs) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  }
}

/** For afterAll: kills any worker still running and removes the bundle. */
export async function closeStoreProcesses(): Promise<void> {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  const b = bundle;
  bundle = undefined;
  if (b) {
    const got = await b.catch(() => undefined);
    if (got) fs.rmSync(got.dir, { recursive: true, force: true });
  }
}
