/** What the pipe2me-ctl commands share: global options, opening the server, option parsers. */
import type { Command } from 'commander';
import { configFileFrom } from '../config/load.js';
import { closeServer, openServer, type ServerContext } from '../server/context.js';
import { InputError } from '../util/errors.js';
import { storeUnavailable } from '../state/errors.js';
import { schemaVersion } from '../state/db.js';
import { parseLogFormat, type LogFormat } from '../util/log.js';
import { validateLookupName } from '../names/names.js';
import type { TokenRecord } from '../state/types.js';
import { readIfExists } from '../util/fsx.js';
import { X509Certificate } from 'node:crypto';
import { Output, isoTime, type GlobalOptions } from './output.js';

export interface Globals extends GlobalOptions {
  config?: string;
}

export function globals(cmd: Command): Globals {
  return cmd.optsWithGlobals() as Globals;
}

/**
 * Opens the server (its configuration and store), runs `fn`, closes. With `waitForStore`, opening is
 * retried while the store cannot be reached — only opening: work that may have committed part of itself
 * (a probe run) is never run twice.
 */
export async function withServer<T>(cmd: Command, fn: (ctx: ServerContext, out: Output) => Promise<T>, o: { waitForStore?: { seconds: number; say: (m: string) => void } } = {}): Promise<T> {
  const g = globals(cmd);
  const open = async () => {
    const live = await openServer(configFileFrom(g.config));
    try {
      await schemaVersion(live.db);
      return live;
    } catch (e) {
      await closeServer(live).catch(() => {});
      throw e;
    }
  };
  const ctx = o.waitForStore ? await retryWhileStoreDown(open, { waitSeconds: o.waitForStore.seconds, say: o.waitForStore.say }) : await openServer(configFileFrom(g.config));
  try {
    return await fn(ctx, new Output(g));
  } finally {
    await closeServer(ctx);
  }
}

/**
 * Runs `fn` again while the state store cannot be reached (a PostgreSQL restart or failover), backing off
 * 1, 2, 4 … 10 s with jitter and saying each time what it waits for, until `waitSeconds` have passed; then
 * the last error stands (exit 11). Anything else fails at once. For commands a timer runs (the probe).
 */
export async function retryWhileStoreDown<T>(fn: () => Promise<T>, o: { waitSeconds: number; say: (m: string) => void }): Promise<T> {
  const deadline = Date.now() + o.waitSeconds * 1000;
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn();
    } catch (e) {
      const down = storeUnavailable(e);
      if (!down) throw e;
      const wait = Math.min(10_000, 1000 * 2 ** attempt) * (0.5 + Math.random() / 2);
      if (Date.now() + wait > deadline) throw down;
      o.say(`waiting for the state store (${down.message.split('\n')[0]}); trying again in ${(wait / 1000).toFixed(1)} s`);
      await new Promise((r) => setTimeout(r, wait));
    }
  }
}

export function parseIntOption(name: string) {
  return (v: string) => {
    if (!/^\d+$/.test(v)) throw new InputError('bad_option', `${name} must be a whole number (got ${JSON.stringify(v)}).`);
    return Number(v);
  };
}

/**
 * Parser for arguments and options that name a subdomain: a malformed name is refused while parsing
 * (exit 2), before the configuration or the state is opened, like any other bad flag value.
 */
export function parseSubdomainName(v: string): string {
  return validateLookupName(v);
}

/** The same for a repeatable option (`--name a b`): commander hands a custom parser the values so far. */
export function collectSubdomainNames(v: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), validateLookupName(v)];
}

export function tokenJson(t: TokenRecord) {
  return {
    id: t.id, label: t.label, max_ports: t.maxPorts, max_subdomains: t.maxSubdomains, max_total_ports: t.maxTotalPorts,
    live_subdomains: t.liveSubdomains, live_ports: t.livePorts, lifespan_seconds: t.lifespanSeconds, extendable: t.extendable,
    single_use: t.singleUse, uses: t.uses, created: isoTime(t.createdAt), revoked: t.revokedAt ? isoTime(t.revokedAt) : null,
  };
}

/** sha256:<hex> of the CA certificate, for pods to pin on first contact. */
export function caPin(ctx: ServerContext): string | null {
  const pem = readIfExists(ctx.layout.caCertFile);
  if (!pem) return null;
  return 'sha256:' + new X509Certificate(pem).fingerprint256.replace(/:/g, '').toLowerCase();
}

/** --log-format, refused with the usage exit code. */
export function parseLogFormatOption(v: string): LogFormat {
  try {
    return parseLogFormat(v);
  } catch (e) {
    throw new InputError('bad_option', `${(e as Error).message}.`);
  }
}
