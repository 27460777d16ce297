/** What each apply run did, in the store's counters and marks (the API's /metrics exposes them). */
import { writeTx, type Store } from '../state/db.js';
import { bumpCounter, observeHistogram, setMark } from '../state/metrics.js';
import { DURATION_BUCKETS } from '../metrics/catalogue.js';

export /** One apply in the store's counters: outcome, time per step, reloads by daemon, the daemon that failed. */
async function recordApplyMetrics(store: Store, r: { ok: boolean; steps: Record<string, number>; reloads: string[]; failedUnit?: string }): Promise<void> {
  try {
    await writeTx(store, async (db) => {
      const at = Date.now() / 1000;
      await bumpCounter(db, 'pipe2me_apply_runs_total', { outcome: r.ok ? 'ok' : 'failed' });
      for (const [name, seconds] of Object.entries(r.steps)) await observeHistogram(db, 'pipe2me_apply_step_duration_seconds', { step: name }, seconds, DURATION_BUCKETS);
      for (const unit of r.reloads) {
        await bumpCounter(db, 'pipe2me_reloads_total', { daemon: unit });
        await setMark(db, `reload_ok:${unit}`, at);
      }
      if (!r.ok) {
        await bumpCounter(db, 'pipe2me_apply_failures_total', { daemon: r.failedUnit ?? 'none' });
        if (r.failedUnit) await setMark(db, `reload_failed:${r.failedUnit}`, at);
      }
      await setMark(db, 'apply_last_run', at);
      await setMark(db, 'apply_last_failed', r.ok ? 0 : 1);
      if (r.ok) await setMark(db, 'apply_last_success', at);
    });
  } catch {
    // The metrics must never turn a good apply into a failed one (a store busy beyond its timeout, say).
  }
}
