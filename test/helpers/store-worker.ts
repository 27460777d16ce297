/**
 * One "process" of a concurrency test (test/helpers/store-procs.ts forks it, bundled): it opens its own
 * handle on the store, says it is ready, waits for the go, runs its one job and reports what came of it.
 * A job's failure is reported (name, code, message), never thrown: the parent counts outcomes.
 */
import { openStore, type StoreTarget } from '../../src/state/db.js';
import { createSubdomain, type CreateSubdomainContext } from '../../src/state/subdomains.js';
import { withToken } from '../../src/state/tokens.js';

export type WorkerJob =
  | { op: 'create'; protocols: string[]; ctx: CreateSubdomainContext }
  | { op: 'token-create'; secret: string; protocols: string[]; ctx: CreateSubdomainContext };

export type WorkerResult =
  | { ok: true; name: string; ports: number[]; ms: number }
  | { ok: false; error: { name: string; code: string | undefined; message: string }; ms: number };

export type ToWorker = { kind: 'start'; target: StoreTarget; job: WorkerJob } | { kind: 'go' };
export type FromWorker = { kind: 'ready' } | { kind: 'done'; result: WorkerResult } | { kind: 'failed'; message: string };

const send = (m: FromWorker) => new Promise<void>((resolve) => process.send!(m, undefined, undefined, () => resolve()));

async function main(): Promise<void> {
  const start = await new Promise<Extract<ToWorker, { kind: 'start' }>>((resolve) => process.once('message', (m: ToWorker) => resolve(m as never)));
  const store = await openStore(start.target);
  try {
    const go = new Promise<void>((resolve) => process.once('message', () => resolve()));
    await send({ kind: 'ready' });
    await go;
    const t0 = performance.now();
    let result: WorkerResult;
    try {
      const { job } = start;
      const made =
        job.op === 'create'
          ? await createSubdomain(store, { protocols: job.protocols, expiresAt: null }, job.ctx)
          : await withToken(store, job.secret, job.protocols.length, (tok, tx) =>
              createSubdomain(tx, { protocols: job.protocols, expiresAt: null, tokenId: tok.id }, { ...job.ctx, maxPorts: tok.maxPorts }),
            );
      result = { ok: true, name: made.record.name, ports: made.record.ports.map((p) => p.port), ms: performance.now() - t0 };
    } catch (e) {
      const err = e instanceof Error ? e : new Error(String(e));
      result = { ok: false, error: { name: err.constructor.name, code: (err as { code?: string }).code, message: err.message }, ms: performance.now() - t0 };
    }
    await send({ kind: 'done', result });
  } finally {
    await store.close();
  }
}

main().then(
  () => process.disconnect?.(),
  async (e: unknown) => {
    await send({ kind: 'failed', message: e instanceof Error ? (e.stack ?? e.message) : String(e) }).catch(() => {});
    process.exit(1);
  },
);
