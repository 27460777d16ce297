/**
 * What the client tools and readiness helpers need from a world: a way to run a command inside one of
 * its hosts, and a private scratch directory. World implements it; keeping it an interface lets those
 * modules stay free of the World class (and of import cycles).
 */
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { RunOptions, RunResult } from '../../src/util/exec.js';
import type { HostName } from './topology.js';
import type { DaemonSpec } from './processes.js';

export interface NsRunner {
  /** Run argv inside the host's namespace, with a timeout (see processes.ts `inNs`). */
  inNs(host: HostName, argv: readonly string[], opts?: RunOptions): Promise<RunResult>;
  /** A fresh path (not created) in the world's scratch directory. */
  scratchPath(stem: string): string;
}

/** Helper scripts (.mjs) run with this node binary inside namespaces. */
export const HELPER_DIR = fileURLToPath(new URL('./bin/', import.meta.url));

export function helperArgv(script: string, args: readonly (string | number)[]): string[] {
  return [process.execPath, path.join(HELPER_DIR, script), ...args.map(String)];
}

/** serve.mjs whoami as a daemon: a TCP server that answers "peer <address> <port>" (on "::" both families). */
export function whoamiSpec(name: string, host: HostName, address: string, port: number): DaemonSpec {
  return {
    name,
    host,
    argv: helperArgv('serve.mjs', ['whoami', address, port]),
    ready: async (d, procs) => {
      await procs.waitLog(d.name, 'listening');
    },
  };
}

/** The peer address a whoami saw; an IPv4 peer of a server on "::" (::ffff:a.b.c.d) in its plain form. */
export function whoamiPeer(received: string): string | undefined {
  return /^peer (\S+) \d+/.exec(received)?.[1]?.replace(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/, '$1');
}

/** Run a helper that prints one JSON object, and return it parsed. */
export async function runJsonHelper<T>(runner: NsRunner, host: HostName, script: string, args: readonly (string | number)[], timeoutMs: number): Promise<T> {
  const r = await runner.inNs(host, helperArgv(script, args), { timeout: timeoutMs });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(line) as T;
  } catch {
    throw new Error(`${script} printed no JSON (in ${host}): ${r.output.slice(-1000)}`);
  }
}
