/**
 * A tunnel set's directory on the pod: everything one published subdomain needs, private keys 0600.
 * One directory per tunnel set; `--dir` chooses it.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ConfigError, ConflictError } from '../util/errors.js';
import { atomicWrite, ensureDir, readIfExists } from '../util/fsx.js';

export interface PodService {
  protocol: 'http' | 'https' | 'tcp';
  /** Public port on the server (and on the router, for the direct route). */
  port: number;
  /** Where the service listens on the pod's side. */
  localHost: string;
  localPort: number;
}

/** One relay of the server's fleet, as the pod pins and dials it (with several relays). */
export interface PodRelay {
  name: string;
  host: string;
  host6: string | null;
  port: number;
  user: string;
  hostKeyAlias: string;
  hostKey: string;
  /** With address slots: the addresses this pod's tunnel listens on at that relay (its slot's there). */
  listen?: string[];
}

export interface PodState {
  version: 1;
  server: string;
  id: string;
  name: string;
  fqdn: string;
  domain: string;
  services: PodService[];
  passthrough: boolean;
  expires: string | null;
  /** `host` is the server's IPv4 address, `host6` its IPv6 one (a pod on an IPv6-only network tunnels there). */
  ssh: { host: string; host6?: string | null; port: number; user: string; hostKeyAlias: string };
  /** With several relays: every relay the tunnel may go to (the ssh wrapper walks them; see relays.ts). */
  relays?: PodRelay[];
  createdAt: string;
  /** With relays and address slots: the slot it is published at (absent: 0). */
  slot?: number;
}

export class PodFiles {
  constructor(readonly dir: string) {}

  get state() { return path.join(this.dir, 'pod.json'); }
  get secret() { return path.join(this.dir, 'secret'); }
  get sshKey() { return path.join(this.dir, 'id_ed25519'); }
  get sshPub() { return path.join(this.dir, 'id_ed25519.pub'); }
  get knownHosts() { return path.join(this.dir, 'known_hosts'); }
  get ca() { return path.join(this.dir, 'ca.pem'); }
  get tlsKey() { return path.join(this.dir, 'tls.key'); }
  get csr() { return path.join(this.dir, 'tls.csr'); }
  get cert() { return path.join(this.dir, 'tls.crt'); }
  get chain() { return path.join(this.dir, 'chain.pem'); }
  /** Which issuer signed the installed certificate ("private" or "acme"), as the server said. */
  get certIssuer() { return path.join(this.dir, 'tls.issuer'); }
  /** A new key whose certificate is still being ordered; the live key serves until it arrives. */
  get pendingKey() { return path.join(this.dir, 'tls.key.pending'); }
  get fullchain() { return path.join(this.dir, 'fullchain.pem'); }
  get status() { return path.join(this.dir, 'status.json'); }
  get pidFile() { return path.join(this.dir, 'start.pid'); }
  get autosshLog() { return path.join(this.dir, 'autossh.log'); }
  /** The ssh autossh runs: waits out the reconnect backoff, then execs ssh. */
  get sshWrapper() { return path.join(this.dir, 'ssh-backoff'); }
  /** Consecutive failed connection attempts ("now": the next one goes at once). */
  get backoffState() { return path.join(this.dir, 'backoff'); }
  /** With several relays: the wrapper's list of relays, and which one the next attempt goes to. */
  get relays() { return path.join(this.dir, 'relays'); }
  get relayNext() { return path.join(this.dir, 'relay-next'); }

  exists(): boolean {
    return fs.existsSync(this.state);
  }

  ensure(): void {
    ensureDir(this.dir, 0o700);
  }

  read(): PodState {
    const text = readIfExists(this.state);
    if (text === undefined) {
      throw new ConfigError(`No pipe2me setup in ${this.dir}.`, { hint: 'Run `pipe2me setup --server URL --token TOKEN` first, or pass --dir to the directory of your setup.' });
    }
    try {
      return JSON.parse(text) as PodState;
    } catch {
      throw new ConfigError(`${this.state} is damaged (not JSON).`, { hint: 'Set up again with `pipe2me setup --force`.' });
    }
  }

  write(state: PodState): void {
    atomicWrite(this.state, JSON.stringify(state, null, 2) + '\n', { mode: 0o600 });
  }

  readSecret(): string {
    const s = readIfExists(this.secret)?.trim();
    if (!s) throw new ConfigError(`The secret for this setup is missing (${this.secret}).`, { hint: 'Set up again with `pipe2me setup --force`.' });
    return s;
  }

  refuseOverwrite(force: boolean): void {
    if (this.exists() && !force) {
      const s = this.read();
      throw new ConflictError('already_set_up', `${this.dir} already holds the setup of ${s.fqdn}.`, {
        hint: 'Use another --dir for a second tunnel set, or --force to replace this one (run `pipe2me destroy` first to free the old name).',
      });
    }
  }
}

export function defaultPodDir(): string {
  if (process.env.PIPE2ME_DIR) return process.env.PIPE2ME_DIR;
  if (process.getuid?.() === 0) return '/var/lib/pipe2me-pod/default';
  return path.join(os.homedir(), '.pipe2me', 'default');
}
