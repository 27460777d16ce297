/**
 * Metrics that outlive one process, in the store: monotonic counters (and histograms as their bucket
 * counters), and marks (the last value of something and when: the last probe run, the last apply). The
 * probe, apply and the key lookup's reader add to them; the API's /metrics reads them all at a scrape.
 */
import { writeTx, type Db } from './db.js';
import { now } from './types.js';

export type Labels = Readonly<Record<string, string>>;

/** One label set in one spelling (keys sorted), so that the same series is always the same row. */
export function labelKey(labels: Labels): string {
  return JSON.stringify(Object.fromEntries(Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))));
}

export function bumpCounter(db: Db, name: string, labels: Labels = {}, by = 1): void {
  db.prepare('INSERT INTO metric_counters (name, labels, value) VALUES (?, ?, ?) ON CONFLICT (name, labels) DO UPDATE SET value = value + excluded.value')
    .run(name, labelKey(labels), by);
}

/** A histogram observation as Prometheus keeps it: cumulative buckets (le), _sum and _count. */
export function observeHistogram(db: Db, name: string, labels: Labels, value: number, buckets: readonly number[]): void {
  writeTx(db, () => {
    for (const le of buckets) if (value <= le) bumpCounter(db, `${name}_bucket`, { ...labels, le: String(le) });
    bumpCounter(db, `${name}_bucket`, { ...labels, le: '+Inf' });
    bumpCounter(db, `${name}_sum`, labels, value);
    bumpCounter(db, `${name}_count`, labels);
  });
}

export function setMark(db: Db, name: string, value: number, at = now()): void {
  db.prepare('INSERT INTO metric_marks (name, value, at) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value, at = excluded.at').run(name, value, at);
}

export interface CounterRow { name: string; labels: Record<string, string>; value: number }

export function readCounters(db: Db): CounterRow[] {
  return (db.prepare('SELECT name, labels, value FROM metric_counters ORDER BY name, labels').all() as { name: string; labels: string; value: number }[])
    .map((r) => ({ name: r.name, labels: JSON.parse(r.labels) as Record<string, string>, value: r.value }));
}

export function readMarks(db: Db): Map<string, { value: number; at: number }> {
  const out = new Map<string, { value: number; at: number }>();
  for (const r of db.prepare('SELECT name, value, at FROM metric_marks').all() as { name: string; value: number; at: number }[]) out.set(r.name, { value: r.value, at: r.at });
  return out;
}
