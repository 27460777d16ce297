/**
 * Coalesces applies inside one long-running process (the API): a caller waits for the first apply of
 * each unit it asked for that starts after its change was committed. Twenty pods registering at once
 * cause a couple of applies, not twenty. Across processes, apply's own locks serialize.
 */
import { apply, stepsMs, type ApplyReport } from '../apply/apply.js';
import type { Unit } from '../render/types.js';
import type { ServerContext } from './context.js';
import { isPipe2meError } from '../util/errors.js';
import type { Log } from '../util/log.js';

interface Waiter {
  resolve: (r: ApplyReport) => void;
  reject: (e: unknown) => void;
}

/** One unit's applies, one at a time, each taking every request made before it started. */
class Lane {
  private running = false;
  private waiters: Waiter[] = [];

  constructor(private readonly ctx: ServerContext, private readonly unit: Unit, private readonly log: Log) {}

  request(): Promise<ApplyReport> {
    const p = new Promise<ApplyReport>((resolve, reject) => this.waiters.push({ resolve, reject }));
    if (!this.running) void this.drain();
    return p;
  }

  private async drain(): Promise<void> {
    this.running = true;
    while (this.waiters.length) {
      const waiters = this.waiters;
      this.waiters = [];
      try {
        const r = await apply(this.ctx, { units: [this.unit] });
        if (r.plan.changedUnits.length) {
          const steps = stepsMs(r);
          this.log(`applied ${r.plan.changedUnits.join(', ')} in ${r.durationMs.toFixed(0)} ms (${Object.entries(steps).map(([k, v]) => `${k} ${v}`).join(', ')})`, { event: 'apply', outcome: 'ok', units: r.plan.changedUnits, duration_ms: Math.round(r.durationMs), steps_ms: steps });
        }
        for (const w of waiters) w.resolve(r);
      } catch (e) {
        this.log(`apply of ${this.unit} failed: ${(e as Error).message}`, { event: 'apply', outcome: 'failed', daemon: (isPipe2meError(e) ? (e.data?.['daemon'] as string | undefined) : undefined) ?? null });
        for (const w of waiters) w.reject(e);
      }
    }
    this.running = false;
  }
}

/**
 * Every unit has a lane of its own (apply locks each unit on its own, see apply.ts): the zone's apply for
 * a new name does not wait behind an nginx check and reload, which at 100,000 names take seconds.
 */
export class ApplyQueue {
  private readonly lanes = new Map<Unit, Lane>();

  constructor(private readonly ctx: ServerContext, private readonly log: Log = () => {}) {}

  /** Resolves with one report per unit, in the order asked, once every one of them has applied. */
  request(units: readonly Unit[]): Promise<ApplyReport[]> {
    return Promise.all([...new Set(units)].map((u) => {
      let lane = this.lanes.get(u);
      if (!lane) this.lanes.set(u, (lane = new Lane(this.ctx, u, this.log)));
      return lane.request();
    }));
  }
}
