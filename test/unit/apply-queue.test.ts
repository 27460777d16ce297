/**
 * The API's apply queue (src/server/apply-queue.ts) with a recording apply in place of the real one (the
 * real apply is what the e2e tests run; here the question is only when the queue starts one and whom each
 * one answers): requests made while an apply runs share the next one; requests nobody waits for settle
 * into one apply after a burst, bounded by maxMs; a request someone waits for takes the settling ones along.
 */
import { describe, expect, it } from 'vitest';
import { ApplyQueue } from '../../src/server/apply-queue.js';
import type { ApplyReport } from '../../src/apply/apply.js';
import type { ServerContext } from '../../src/server/context.js';
import type { Unit } from '../../src/render/types.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function recorder(applyMs = 30) {
  const calls: { units: Unit[]; at: number }[] = [];
  const t0 = Date.now();
  const run = async (_ctx: ServerContext, o: { units: Unit[] }) => {
    calls.push({ units: o.units, at: Date.now() - t0 });
    await sleep(applyMs);
    return { plan: { changedUnits: [] }, durationMs: applyMs, steps: {}, seq: calls.length } as unknown as ApplyReport;
  };
  return { calls, run, t0 };
}

const ctx = {} as ServerContext;

describe('the API\'s apply queue', () => {
  it('requests made while an apply runs share the one after it; each unit has its own lane', async () => {
    const r = recorder(50);
    const q = new ApplyQueue(ctx, () => {}, r.run);
    const first = q.request(['dns']);
    await sleep(10);
    const [a, b] = [q.request(['dns']), q.request(['dns', 'nginx'])];
    await Promise.all([first, a, b]);
    expect(r.calls.filter((c) => c.units[0] === 'dns')).toHaveLength(2);
    expect(r.calls.filter((c) => c.units[0] === 'nginx')).toHaveLength(1);
    // The second dns apply started only after the first ended.
    const dns = r.calls.filter((c) => c.units[0] === 'dns');
    expect(dns[1]!.at - dns[0]!.at).toBeGreaterThanOrEqual(45);
  });

  it('a burst of settled requests is one apply, once the burst has been quiet for quietMs', async () => {
    const r = recorder();
    const q = new ApplyQueue(ctx, () => {}, r.run);
    const all: Promise<unknown>[] = [];
    for (let i = 0; i < 6; i++) {
      all.push(q.settled(['nginx'], { quietMs: 80, maxMs: 5000 }));
      await sleep(30);
    }
    const lastAt = Date.now() - r.t0;
    expect(r.calls).toHaveLength(0);
    await Promise.all(all);
    expect(r.calls).toHaveLength(1);
    expect(r.calls[0]!.at).toBeGreaterThanOrEqual(lastAt + 40);
  });

  it('a steady stream of settled requests still applies by maxMs after the first of it', async () => {
    const r = recorder(10);
    const q = new ApplyQueue(ctx, () => {}, r.run);
    const started = Date.now() - r.t0;
    // The stream lasts well past maxMs: without the bound the first apply would come only after it ended.
    const until = Date.now() + 1500;
    const all: Promise<unknown>[] = [];
    while (Date.now() < until) {
      all.push(q.settled(['nginx'], { quietMs: 100, maxMs: 250 }));
      await sleep(20);
    }
    await Promise.all(all);
    expect(r.calls.length).toBeGreaterThanOrEqual(2);
    expect(r.calls[0]!.at - started).toBeGreaterThanOrEqual(240);
    expect(r.calls[0]!.at - started).toBeLessThan(1000);
  });

  it('a request someone waits for starts at once and answers the settling requests too', async () => {
    const r = recorder();
    const q = new ApplyQueue(ctx, () => {}, r.run);
    const settling = q.settled(['nginx'], { quietMs: 10_000, maxMs: 20_000 });
    await sleep(20);
    const t = Date.now();
    await Promise.all([q.request(['nginx']), settling]);
    expect(Date.now() - t).toBeLessThan(1000);
    expect(r.calls).toHaveLength(1);
    // Nothing is left armed: no second apply comes later.
    await sleep(100);
    expect(r.calls).toHaveLength(1);
  });

  it('closed, it starts no apply for the settling requests: they are dropped, and say so', async () => {
    const r = recorder();
    const q = new ApplyQueue(ctx, () => {}, r.run);
    const s = q.settled(['nginx'], { quietMs: 50, maxMs: 100 });
    q.close();
    await expect(s).rejects.toThrow(/dropped: the API is closing/);
    await sleep(150);
    expect(r.calls).toHaveLength(0);
  });

  it('a failed apply rejects every request it answered, settled ones included, and the next request applies again', async () => {
    let fail = true;
    const calls: Unit[][] = [];
    const q = new ApplyQueue(ctx, () => {}, async (_c, o) => {
      calls.push(o.units);
      await sleep(10);
      if (fail) throw new Error('nginx -t refused it');
      return { plan: { changedUnits: [] }, durationMs: 1, steps: {} } as unknown as ApplyReport;
    });
    const s = q.settled(['nginx'], { quietMs: 20, maxMs: 100 });
    await expect(s).rejects.toThrow(/refused/);
    fail = false;
    await expect(q.request(['nginx'])).resolves.toHaveLength(1);
    expect(calls).toHaveLength(2);
  });
});
