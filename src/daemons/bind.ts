/** The authoritative BIND instance: checks, whole loads through rndc, dynamic updates through nsupdate. */
import type { Config } from '../config/types.js';
import { CheckFailedError, DaemonError } from '../util/errors.js';
import { run } from '../util/exec.js';
import type { Layout } from '../render/layout.js';
import { runningPid, waitUntil, type ReloadOutcome } from './process.js';
import { soaSerial, waitForSerial } from './dns-query.js';
import * as fs from 'node:fs';
import { atomicWrite, readIfExists } from '../util/fsx.js';

export async function checkBind(c: Config, stagedConfig: string | undefined, stagedZone: string | undefined): Promise<void> {
  if (stagedConfig) {
    const r = await run('named-checkconf', [stagedConfig], { allowFailure: true, timeout: 30_000 });
    if (r.exitCode !== 0) throw new CheckFailedError('BIND (named-checkconf)', stagedConfig, r.output);
  }
  if (stagedZone) {
    const r = await run('named-checkzone', ['-k', 'fail', '-n', 'fail', '-i', 'local', c.domain, stagedZone], { allowFailure: true, timeout: 60_000 });
    if (r.exitCode !== 0) throw new CheckFailedError('BIND (named-checkzone)', stagedZone, r.output);
  }
}

function rndc(c: Config, L: Layout, args: string[]) {
  return run('rndc', ['-k', L.bind.rndcKey, '-s', '127.0.0.1', '-p', String(c.dns.controlPort), ...args], { allowFailure: true, timeout: 30_000 });
}

/**
 * A whole load: named's served copy becomes the rendered zone. A dynamic zone must be frozen first (named
 * then writes out what it holds and takes no updates), its journal goes with the old copy, and thawing
 * loads the new one. A zone that is not dynamic yet (named runs a configuration from before) is reloaded
 * after the reconfiguration that makes it dynamic.
 */
export async function reloadBind(c: Config, L: Layout, reconfig: boolean, serial: number | null): Promise<ReloadOutcome> {
  const start = performance.now();
  const idle = notRunning(L);
  if (idle) return idle;
  const done: string[] = [];
  const step = async (args: string[], mayFail = false): Promise<boolean> => {
    const r = await rndc(c, L, args);
    if (r.exitCode === 0) {
      done.push(args.join(' '));
      return true;
    }
    if (mayFail) return false;
    throw new DaemonError('reload_failed', `rndc ${args.join(' ')} failed (exit ${r.exitCode}): ${r.output}`, {
      hint: 'The checked files are in place; look at named\'s log, then run `pipe2me-ctl apply --full` again.',
    });
  };
  // Fails when the zone is not dynamic (or not loaded): then there is nothing to freeze.
  const frozen = await step(['freeze', c.domain], true);
  // Freezing makes named write what it holds into its copy, and `rndc freeze` returns before that write
  // is done: a copy put in place before it would be overwritten with the old zone (seen at 50,000 pods).
  if (frozen) {
    try {
      await waitForDump(c, L);
    } catch (e) {
      await rndc(c, L, ['thaw', c.domain]); // never leave the zone taking no updates
      throw e;
    }
  }
  placeServedZone(L);
  if (reconfig) await step(['reconfig']);
  if (frozen) await step(['thaw', c.domain]);
  else if (!reconfig) await step(['reload', c.domain]);
  await waitForSerial(c, serial, 'named');
  return { status: 'reloaded', detail: `rndc ${done.join(', ')}`, servedAfterMs: performance.now() - start };
}

/** The SOA serial at the head of a zone file, in pipe2me's format or in the one named writes. */
export function fileSerial(file: string): number | null {
  let head = '';
  try {
    const fd = fs.openSync(file, 'r');
    try {
      const buf = Buffer.alloc(4096);
      head = buf.subarray(0, fs.readSync(fd, buf, 0, buf.length, 0)).toString('latin1');
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return null;
  }
  const m = /\bSOA\s+\S+\s+\S+\s+\(?\s*(\d+)/.exec(head);
  return m ? Number(m[1]) : null;
}

/** Until named's copy holds the serial it serves: its dump of the frozen zone is then complete. */
async function waitForDump(c: Config, L: Layout, timeoutMs = 10_000): Promise<void> {
  const took = await waitUntil(async () => {
    const served = await soaSerial(c.server.ipv4, c.domain, 1000);
    return served !== null && fileSerial(L.bind.servedZone) === served;
  }, timeoutMs, 10);
  if (took === null) {
    throw new DaemonError('reload_timeout', `named did not write out the frozen zone ${c.domain} within ${timeoutMs / 1000} s.`, {
      hint: 'Look at named\'s log; run `rndc thaw` for the zone if it stays frozen, then `pipe2me-ctl apply --full`.',
    });
  }
}

/** With no named running, its copy is simply put in place: named loads it when it starts. */
function notRunning(L: Layout): ReloadOutcome | undefined {
  if (runningPid(L.bind.pidFile, 'named') !== undefined) return undefined;
  placeServedZone(L);
  return { status: 'not-running', detail: `no named at ${L.bind.pidFile}; the new files are used when it starts` };
}

/** named's served copy := the rendered zone, and the journal of the old copy is gone. */
function placeServedZone(L: Layout): void {
  const zone = readIfExists(L.bind.zone);
  if (zone === undefined) return;
  atomicWrite(L.bind.servedZone, zone, { mode: 0o644 });
  fs.rmSync(`${L.bind.servedZone}.jnl`, { force: true });
}

export interface ZoneDelta {
  /** Zone file lines (owner ttl IN type data) that went and came. */
  removed: string[];
  added: string[];
  /** The zone's SOA line as rendered, with the new serial ("@ IN SOA ..."). */
  soa: string;
}

/**
 * The changed records as one dynamic update (RFC 2136), TSIG-signed with the rndc key, over TCP: named
 * applies all of it or none, checks it as it does a zone, and serves it when nsupdate returns. The SOA
 * goes with it, so named serves exactly the serial the planner chose. Every line was built by the zone's
 * checked line builders (no newline, no quote beyond the TXT value's own), so none can smuggle a command.
 */
export function updateScript(c: Config, d: ZoneDelta): string {
  const came = new Set(d.added);
  const went = new Set(d.removed);
  const soa = d.soa.replace(/^@ IN SOA /, `${c.domain}. ${c.dns.ttl} IN SOA `);
  return [
    `server ${c.server.ipv4} 53`,
    `zone ${c.domain}`,
    ...d.removed.filter((l) => !came.has(l)).map((l) => `update delete ${l}`),
    ...d.added.filter((l) => !went.has(l)).map((l) => `update add ${l}`),
    `update add ${soa}`,
    'send',
    '',
  ].join('\n');
}

export async function updateBind(c: Config, L: Layout, d: ZoneDelta, serial: number | null): Promise<ReloadOutcome> {
  const start = performance.now();
  const idle = notRunning(L);
  if (idle) return idle;
  const script = updateScript(c, d);
  const r = await run('nsupdate', ['-v', '-t', '10', '-k', L.bind.rndcKey], { input: script, allowFailure: true, timeout: 30_000 });
  if (r.exitCode !== 0) {
    throw new DaemonError('update_failed', `named refused the dynamic update of ${c.domain} (nsupdate exit ${r.exitCode}): ${r.output.trim().slice(0, 500)}`, {
      hint: 'Nothing of it is served. Run `pipe2me-ctl apply --full`: it checks the whole zone and loads it.',
    });
  }
  await waitForSerial(c, serial, 'named');
  const changes = script.split('\n').filter((l) => l.startsWith('update ')).length - 1;
  return { status: 'reloaded', detail: `dynamic update of ${changes} record(s)`, servedAfterMs: performance.now() - start };
}

export function namedArgv(L: Layout): string[] {
  return ['/usr/sbin/named', '-g', '-c', L.bind.config];
}

/** A named.conf `key` clause: named includes it and `rndc -k` reads it. Written 0600 by the caller. */
export async function generateRndcKey(): Promise<string> {
  const r = await run('tsig-keygen', ['-a', 'hmac-sha256', 'rndc-key'], { timeout: 10_000 });
  return r.stdout;
}
