/**
 * Coalesces applies inside one long-running process (the API, the watcher): a caller waits for the
 * first apply that starts after its change was committed. Twenty pods registering at once cause a
 * couple of applies, not twenty. Across processes, apply's own lock serializes.
 */
import { apply, type ApplyReport } from '../apply/apply.js';
import type { Unit } from '../render/types.js';
import type { ServerContext } from './context.js';
import { isPipe2meError } from '../util/errors.js';
import type { Log } from '../util/log.js';

interface Waiter {
  resolve: (r: ApplyReport) => void;
  reject: (e: unknown) => void;
}

export class ApplyQueue {
  private running = false;
  private pendingUnits = new Set<Unit>();
  private waiters: Waiter[] = [];

  constructor(private readonly ctx: ServerContext, private readonly log: Log = () => {}) {}

  request(units: readonly Unit[]): Promise<ApplyReport> {
    for (const u of units) this.pendingUnits.add(u);
    const p = new Promise<ApplyReport>((resolve, reject) => this.waiters.push({ resolve, reject }));
    if (!this.running) void this.drain();
    return p;
  }

  private async drain(): Promise<void> {
    this.running = true;
    while (this.waiters.length) {
      const waiters = this.waiters;
      const units = [...this.pendingUnits];
      this.waiters = [];
      this.pendingUnits = new Set();
      try {
        const r = await apply(this.ctx, { units });
        if (r.plan.changedUnits.length) {
          const steps = Object.entries(r.steps).map(([k, v]) => `${k} ${(v * 1000).toFixed(0)}`).join(', ');
          this.log(`applied ${r.plan.changedUnits.join(', ')} in ${r.durationMs.toFixed(0)} ms (${steps})`, { event: 'apply', outcome: 'ok', units: r.plan.changedUnits, duration_ms: Math.round(r.durationMs), steps_ms: Object.fromEntries(Object.entries(r.steps).map(([k, v]) => [k, Math.round(v * 1000)])) });
        }
        for (const w of waiters) w.resolve(r);
      } catch (e) {
        this.log(`apply failed: ${(e as Error).message}`, { event: 'apply', outcome: 'failed', daemon: (isPipe2meError(e) ? (e.data?.['daemon'] as string | undefined) : undefined) ?? null });
        for (const w of waiters) w.reject(e);
      }
    }
    this.running = false;
  }
}
