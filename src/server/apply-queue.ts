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

type ApplyFn = (ctx: ServerContext, opts: { units: Unit[] }) => Promise<ApplyReport>;

interface Waiter {
  resolve: (r: ApplyReport) => void;
  reject: (e: unknown) => void;
}

/** How a request that nobody waits for lets a burst of changes settle into one apply (see Lane.settled). */
export interface Settle {
  /** The apply starts once no such request came for this long… */
  quietMs: number;
  /** …or this long after the first of them, whichever is sooner. */
  maxMs: number;
}

/** One unit's applies, one at a time, each taking every request made before it started. */
class Lane {
  private running = false;
  private waiters: Waiter[] = [];
  private settling: Waiter[] = [];
  private settleTimer: NodeJS.Timeout | undefined;
  private settlingSince = 0;

  constructor(private readonly ctx: ServerContext, private readonly unit: Unit, private readonly log: Log, private readonly run: ApplyFn) {}

  request(): Promise<ApplyReport> {
    const p = new Promise<ApplyReport>((resolve, reject) => this.waiters.push({ resolve, reject }));
    // Requests that were settling ride along: this apply takes in their changes too.
    this.release();
    if (!this.running) void this.drain();
    return p;
  }

  /**
   * A request for an apply that nobody waits for, after a change that is served without it meanwhile
   * (nginx's entry maps, which the API answers for until they hold a new name): a burst of such changes
   * becomes one apply after the burst, instead of one apply per change competing for the CPU with the
   * changes that follow (at 100,000 names nginx's check and reload take over a second of CPU each).
   */
  settled(s: Settle): Promise<ApplyReport> {
    const p = new Promise<ApplyReport>((resolve, reject) => this.settling.push({ resolve, reject }));
    const now = Date.now();
    if (this.settleTimer === undefined) this.settlingSince = now;
    else clearTimeout(this.settleTimer);
    const wait = Math.max(0, Math.min(s.quietMs, this.settlingSince + s.maxMs - now));
    this.settleTimer = setTimeout(() => {
      this.release();
      if (!this.running) void this.drain();
    }, wait);
    return p;
  }

  /** Drops the settling requests (the API is closing; the watcher or the next apply renders their changes). */
  forget(): void {
    this.stopSettling();
    const dropped = this.settling;
    this.settling = [];
    for (const w of dropped) w.reject(new Error(`the ${this.unit} apply was dropped: the API is closing`));
  }

  private stopSettling(): void {
    if (this.settleTimer !== undefined) clearTimeout(this.settleTimer);
    this.settleTimer = undefined;
  }

  private release(): void {
    this.stopSettling();
    this.waiters.push(...this.settling);
    this.settling = [];
  }

  private async drain(): Promise<void> {
    this.running = true;
    while (this.waiters.length) {
      const waiters = this.waiters;
      this.waiters = [];
      try {
        const r = await this.run(this.ctx, { units: [this.unit] });
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
 * A burst of creates: their nginx apply 1 s after the last of them, 5 s after the first at the latest (a
 * name is served by the API's entry lookup meanwhile, and a visitor of it asks for the apply at once).
 */
export const SETTLE: Settle = { quietMs: 1000, maxMs: 5000 };

/**
 * Every unit has a lane of its own (apply locks each unit on its own, see apply.ts): the zone's apply for
 * a new name does not wait behind an nginx check and reload, which at 100,000 names take seconds.
 */
export class ApplyQueue {
  private readonly lanes = new Map<Unit, Lane>();

  /** `run` is apply itself; a test gives one that records its calls. */
  constructor(private readonly ctx: ServerContext, private readonly log: Log = () => {}, private readonly run: ApplyFn = apply) {}

  /** Resolves with one report per unit, in the order asked, once every one of them has applied. */
  request(units: readonly Unit[]): Promise<ApplyReport[]> {
    return Promise.all([...new Set(units)].map((u) => this.lane(u).request()));
  }

  /** As request, for an apply nobody waits for: it starts once such requests have settled (see Lane.settled). */
  settled(units: readonly Unit[], s: Settle = SETTLE): Promise<ApplyReport[]> {
    return Promise.all([...new Set(units)].map((u) => this.lane(u).settled(s)));
  }

  /** No apply is started after this for a settling request (one running goes on to its end). */
  close(): void {
    for (const lane of this.lanes.values()) lane.forget();
  }

  private lane(u: Unit): Lane {
    let lane = this.lanes.get(u);
    if (!lane) this.lanes.set(u, (lane = new Lane(this.ctx, u, this.log, this.run)));
    return lane;
  }
}
