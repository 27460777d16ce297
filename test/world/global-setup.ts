/**
 * vitest global setup: a leak check around the whole test run.
 *
 * setup: gives the run a suite id (workers inherit it through the environment, and every world records
 * itself in the suite's journal) and takes a snapshot. teardown: takes another snapshot and throws —
 * failing the run — if anything the suite's worlds created is still there, listing what; it then
 * removes what leaked, so one bad run does not poison the next.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { findLeaks, formatLeaks, scopeFromJournal, takeSnapshot, type LeakSnapshot } from './leaks.js';
import { SUITE_ENV, ensureWorldsDir, journalFile, readJournal, readRecords, teardownRecord, worldRoot } from './registry.js';
import { sweepNamespaces } from './topology.js';

let suite: string | undefined;
let before: LeakSnapshot | undefined;

export async function setup(): Promise<void> {
  // Worlds need root (namespaces, nft, useradd); without it there is nothing to check.
  if (process.getuid?.() !== 0) return;
  suite = `${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
  process.env[SUITE_ENV] = suite;
  ensureWorldsDir();
  fs.writeFileSync(journalFile(suite), '', { mode: 0o644 });
  before = await takeSnapshot();
}

export async function teardown(): Promise<void> {
  if (!suite || !before) return;
  const scope = scopeFromJournal(suite, process.pid);
  const after = await takeSnapshot(scope);
  const leaks = findLeaks(before, after, scope);
  const journal = readJournal(suite);
  const worlds = journal.filter((e) => e.event === 'world').length;
  if (leaks.length === 0) {
    fs.rmSync(journalFile(suite), { force: true });
    if (worlds > 0) console.log(`[leak check] ${worlds} worlds created and torn down; nothing left behind`);
    return;
  }
  await cleanUp(journal.map((e) => e.prefix), leaks.filter((l) => l.kind === 'namespace').map((l) => l.what));
  fs.rmSync(journalFile(suite), { force: true });
  throw new Error(`[leak check] the test run left ${leaks.length} things behind (now removed):\n${formatLeaks(leaks)}`);
}

/** Remove what leaked: the suite's worlds by their records, then any namespace still there. */
async function cleanUp(prefixes: string[], namespaces: string[]): Promise<void> {
  const wanted = new Set(prefixes);
  for (const rec of readRecords()) if (wanted.has(rec.prefix)) await teardownRecord(rec);
  await sweepNamespaces(namespaces, 500);
  for (const p of wanted) {
    fs.rmSync(worldRoot(p), { recursive: true, force: true });
    fs.rmSync(`${worldRoot(p)}.json`, { force: true });
  }
}
