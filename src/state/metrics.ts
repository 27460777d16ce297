/**
 * Metrics that outlive one process, in the store: monotonic counters (and histograms as their bucket
 * counters), and marks (the last value of something and when: the last probe run, the last apply). The
 * probe, apply and the key lookup's reader add to them; the API's /metrics reads them all at a scrape.
 */
import { writeTx, type Store } from './store.js';
import { now } from './types.js';

export type Labels = Readonly<Record<string, string>>;

/** One label set in one spelling (keys sorted), so that the same series is always the same row. */
export function labelKey(labels: Labels): string {
  return JSON.stringify(Object.fromEntries(Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))));
}

export async function bumpCounter(s: Store, name: string, labels: Labels = {}, by = 1): Promise<void> {
  await s.q.insertInto('metric_counters').values({ name, labels: labelKey(labels), value: by })
    .onConflict((oc) => oc.columns(['name', 'labels']).doUpdateSet((eb) => ({ value: eb('metric_counters.value', '+', eb.ref('excluded.value')) }))).execute();
}

/** A histogram observation as Prometheus keeps it: cumulative buckets (le), _sum and _count. */
export async function observeHistogram(store: Store, name: string, labels: Labels, value: number, buckets: readonly number[]): Promise<void> {
  await writeTx(store, async (s) => {
    for (const le of buckets) if (value <= le) await bumpCounter(s, `${name}_bucket`, { ...labels, le: String(le) });
    await bumpCounter(s, `${name}_bucket`, { ...labels, le: '+Inf' });
    await bumpCounter(s, `${name}_sum`, labels, value);
    await bumpCounter(s, `${name}_count`, labels);
  });
}

export async function setMark(s: Store, name: string, value: number, at = now()): Promise<void> {
  await s.q.insertInto('metric_marks').values({ name, value, at }).onConflict((oc) => oc.column('name').doUpdateSet({ value, at })).execute();
}

export interface CounterRow { name: string; labels: Record<string, string>; value: number }

export async function readCounters(s: Store): Promise<CounterRow[]> {
  return (await s.q.selectFrom('metric_counters').select(['name', 'labels', 'value']).orderBy('name').orderBy('labels').execute())
    .map((r) => ({ name: r.name, labels: JSON.parse(r.labels) as Record<string, string>, value: r.value }));
}

export async function readMarks(s: Store): Promise<Map<string, { value: number; at: number }>> {
  const out = new Map<string, { value: number; at: number }>();
  for (const r of await s.q.selectFrom('metric_marks').select(['name', 'value', 'at']).execute()) out.set(r.name, { value: r.value, at: r.at });
  return out;
}
