/**
 * The tunnel: one autossh for all of a pod's ports. `tunnelArgv` is pure; `TunnelSupervisor` runs it,
 * keeps its stdin open (the server's session holder waits for EOF), watches what it prints to tell
 * "up" from "down", restarts it when it ends, and reports every state change.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as readline from 'node:readline';
import type { PodFiles, PodState } from './files.js';

export const TUNNEL_CIPHERS = 'aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com';

export interface TunnelTiming {
  serverAliveInterval: number;
  serverAliveCountMax: number;
  connectTimeout: number;
}

export const DEFAULT_TIMING: TunnelTiming = { serverAliveInterval: 5, serverAliveCountMax: 3, connectTimeout: 10 };

/** The destination autossh is given with several relays (ssh connects where the wrapper's HostName says). */
export const RELAY_PLACEHOLDER = 'pipe2me-relay';

/**
 * With several relays a dead relay must be noticed quickly, since another one is there to go to: a silent
 * link is given up after 4–6 s (2 keepalives 2 s apart), a relay that does not answer a connect after 4 s.
 */
export const RELAYED_TIMING: TunnelTiming = { serverAliveInterval: 2, serverAliveCountMax: 2, connectTimeout: 4 };

export function knownHostsLine(alias: string, hostKey: string): string {
  return `${alias} ${hostKey}\n`;
}

/**
 * autossh -M 0 (no monitor port: ssh's own ServerAlive checks detect a dead link) running ssh WITH a
 * session (no -N): OpenSSH sets TCP_NODELAY only when a session is set up, and without it every new
 * client connection through the tunnel stalls ~44 ms. The server's forced command holds the session.
 */
export function tunnelArgv(s: PodState, f: PodFiles, t: TunnelTiming = s.relays?.length ? RELAYED_TIMING : DEFAULT_TIMING): string[] {
  const o = (k: string, v: string | number) => ['-o', `${k}=${v}`];
  // With several relays the wrapper names the relay (its alias, port and address): see sshWrapperScript.
  const relayed = Boolean(s.relays?.length);
  return [
    'autossh', '-M', '0',
    '-F', '/dev/null',
    '-T',
    '-i', f.sshKey,
    ...o('IdentitiesOnly', 'yes'),
    ...o('IdentityAgent', 'none'),
    ...o('ForwardAgent', 'no'),
    ...o('ForwardX11', 'no'),
    ...o('BatchMode', 'yes'),
    ...o('ExitOnForwardFailure', 'yes'),
    ...o('ServerAliveInterval', t.serverAliveInterval),
    ...o('ServerAliveCountMax', t.serverAliveCountMax),
    ...o('ConnectTimeout', t.connectTimeout),
    ...o('UserKnownHostsFile', f.knownHosts),
    ...o('GlobalKnownHostsFile', '/dev/null'),
    ...o('StrictHostKeyChecking', 'yes'),
    ...(relayed ? [] : o('HostKeyAlias', s.ssh.hostKeyAlias)),
    ...o('CheckHostIP', 'no'),
    ...o('UpdateHostKeys', 'no'),
    ...o('Ciphers', TUNNEL_CIPHERS),
    ...o('Compression', 'no'),
    // ssh's default LogLevel (INFO) is what reports "Timeout, server not responding": the supervisor's
    // signal that the link died. Nothing else is printed on a good connection.
    ...(relayed ? [] : ['-p', String(s.ssh.port)]),
    ...s.services.flatMap((svc) => ['-R', `${svc.port}:${svc.localHost.includes(':') ? `[${svc.localHost}]` : svc.localHost}:${svc.localPort}`]),
    // autossh wants a destination: with relays a placeholder, which the wrapper's -o HostName= replaces.
    relayed ? RELAY_PLACEHOLDER : `${s.ssh.user}@${tunnelHost(s)}`,
  ];
}

/**
 * Which of the server's addresses the tunnel goes to: the IPv4 one whenever this machine has an IPv4
 * default route (the server must see the router's IPv4 address for the IPv4 direct route), the IPv6 one
 * on an IPv6-only network. Decided when the tunnel starts; where the routing table cannot be read
 * (macOS), IPv4.
 */
export function tunnelHost(s: Pick<PodState, 'ssh'>, routes: { v4: boolean; v6: boolean } = defaultRoutes()): string {
  const h6 = s.ssh.host6;
  if (h6 && !routes.v4 && routes.v6) return h6;
  return s.ssh.host;
}

/** Whether this machine has a default route per family (Linux /proc; both true where it cannot tell). */
export function defaultRoutes(read: (p: string) => string | null = readProc): { v4: boolean; v6: boolean } {
  const v4 = read('/proc/net/route');
  const v6 = read('/proc/net/ipv6_route');
  if (v4 === null && v6 === null) return { v4: true, v6: true };
  // /proc/net/route: "Iface Destination Gateway ..." with the destination in hex; 00000000 is the default.
  const hasV4 = (v4 ?? '').split('\n').slice(1).some((l) => l.trim().split(/\s+/)[1] === '00000000');
  // /proc/net/ipv6_route: destination (32 hex) and its prefix length first; ::/0 that is not the
  // "unreachable" placeholder (flags with RTF_REJECT 0x0200, device lo) is a default route.
  const hasV6 = (v6 ?? '').split('\n').some((l) => {
    const f = l.trim().split(/\s+/);
    return f[0] === '0'.repeat(32) && f[1] === '00' && f[9] !== 'lo' && (parseInt(f[8] ?? '0', 16) & 0x0200) === 0;
  });
  return { v4: hasV4, v6: hasV6 };
}

function readProc(p: string): string | null {
  try {
    return fs.readFileSync(p, 'utf8');
  } catch {
    return null;
  }
}

/** The reconnect backoff: full jitter over a window that doubles per failure, capped (seconds). */
export const BACKOFF = { baseSeconds: 2, capSeconds: 30 } as const;

/**
 * The ssh that autossh runs (AUTOSSH_PATH): it sleeps a random time in [0, min(cap, base × 2^failures)]
 * (with several relays 2^(failures / relays): the window grows per round of the list) before each
 * connection attempt and then execs ssh. autossh stays the supervisor but no longer retries
 * in a tight loop (it retried a refused key 13 times in 1.6 s), and a fleet reconnecting after a server
 * restart arrives spread out instead of all at once: the first attempt after a session ends waits up to
 * `base` s, later ones longer, never more than `cap` s. `pipe2me start` writes "now" (no wait) before the
 * first attempt and before a reconnect it asks for itself, and 0 once a session is up.
 */
export function sshWrapperScript(stateFile: string, sshPath = 'ssh', relays?: { list: string; next: string }): string {
  const q = (p: string) => `'${p.replace(/'/g, `'\\''`)}'`;
  // With several relays: each attempt goes to the relay after the previous attempt's (see relays.ts).
  const pick = relays ? `
relays=${q(relays.list)}
next=${q(relays.next)}
if [ -s "$relays" ]; then
  count=$(grep -c . "$relays")
  i=0
  [ -r "$next" ] && IFS= read -r i < "$next"
  case $i in ''|*[!0-9]*) i=0 ;; esac
  i=$((i % count))
  echo "$(( (i + 1) % count ))" > "$next"
  line=$(sed -n "$((i + 1))p" "$relays")
  set -f
  # name alias address port user listen: checked by pipe2me when it wrote the file.
  set -- $line "$@"
  set +f
  name=$1 alias=$2 address=$3 port=$4 user=$5 listen=$6
  shift 6
  if [ "$listen" != - ]; then
    # Address slots: every -R PORT:HOST:LPORT listens on this relay's addresses of the pod's slot,
    # ADDRESS:PORT:HOST:LPORT (one per family), which is all its key may listen on there.
    r=0
    for a do
      shift
      if [ "$r" = 1 ]; then
        for l in $(echo "$listen" | tr , ' '); do
          case $l in *:*) set -- "$@" -R "[$l]:$a" ;; *) set -- "$@" -R "$l:$a" ;; esac
        done
        r=0
      elif [ "$a" = -R ]; then
        r=1
      else
        set -- "$@" "$a"
      fi
    done
  fi
  echo "pipe2me-relay: connecting to relay $name ($address)" >&2
  # Given first, these win over anything later on the line (ssh keeps the first value of an option).
  exec ${q(sshPath)} -o "HostName=$address" -o "HostKeyAlias=$alias" -o "Port=$port" -o "User=$user" "$@"
fi` : '';
  // With several relays the first attempt after a session ended goes at once: it goes to another relay,
  // not back to the one that just dropped it (the backoff protects a restarting relay from its own fleet).
  // It counts as a failure all the same: if that relay does not answer either, the backoff starts.
  const firstAtOnce = relays ? `\n[ "$n" = 0 ] && [ -s ${q(relays.list)} ] && n=first` : '';
  // With several relays the wait grows per round of the list, not per attempt: a dead relay in the list
  // (every other attempt, with two) does not double the wait before the next try at a live one.
  const perRound = relays ? `\n  count=$(grep -c . ${q(relays.list)} 2>/dev/null)
  case $count in ''|*[!0-9]*|0) count=1 ;; esac
  level=$((n / count))` : '';
  return `#!/bin/sh
# pipe2me: the ssh that autossh runs for this tunnel set; see src/pod/tunnel.ts (sshWrapperScript).
state=${q(stateFile)}
n=0
[ -r "$state" ] && IFS= read -r n < "$state"${firstAtOnce}
if [ "$n" = now ]; then
  n=0
elif [ "$n" = first ]; then
  n=1
else
  case $n in ''|*[!0-9]*) n=0 ;; esac
  level=$n${perRound}
  window=${BACKOFF.baseSeconds}
  i=0
  while [ "$i" -lt "$level" ] && [ "$window" -lt ${BACKOFF.capSeconds} ]; do window=$((window * 2)); i=$((i + 1)); done
  [ "$window" -gt ${BACKOFF.capSeconds} ] && window=${BACKOFF.capSeconds}
  # A random point in [0, window) with millisecond steps (od reads two bytes of /dev/urandom).
  r=$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')
  ms=$((r % (window * 1000)))
  sleep "$((ms / 1000)).$(printf '%03d' $((ms % 1000)))"
  n=$((n + 1))
fi
echo "$n" > "$state"${pick}
exec ${q(sshPath)} "$@"
`;
}

export function tunnelEnv(logFile: string, sshWrapper?: string): Record<string, string> {
  return {
    // Retry even when the very first connection fails (server down at boot). The backoff between
    // attempts is the wrapper's; autossh's own (after five quick deaths) is kept to at most 1 s.
    AUTOSSH_GATETIME: '0',
    AUTOSSH_POLL: '1',
    AUTOSSH_FIRST_POLL: '1',
    ...(sshWrapper ? { AUTOSSH_PATH: sshWrapper } : {}),
    // autossh's own messages (restarts) go to a file: not syslog, which many pods lack, and not
    // /dev/stderr, which autossh cannot open when stderr is a socket (as Node's child pipes are).
    // ssh's own errors still come on stderr, and that is what the state follows.
    AUTOSSH_LOGFILE: logFile,
  };
}

/** How long after the session opened a forward failure may still arrive. */
const UP_GRACE_MS = 300;

export type TunnelState = 'starting' | 'connecting' | 'up' | 'down' | 'stopped';

export interface TunnelEvent {
  state: TunnelState;
  detail: string;
  at: number;
}

export class TunnelSupervisor {
  private child: ChildProcess | undefined;
  private stopping = false;
  private restartTimer: NodeJS.Timeout | undefined;
  private upTimer: NodeJS.Timeout | undefined;
  private attempt = 0;
  state: TunnelState = 'starting';
  lastError: string | null = null;
  since = Date.now();
  connects = 0;

  constructor(
    private readonly argv: string[],
    private readonly onEvent: (e: TunnelEvent) => void,
    private readonly env: Record<string, string>,
    private readonly restartDelayMs = 1000,
    private readonly onLine?: (line: string) => void,
  ) {}

  private set(state: TunnelState, detail: string): void {
    if (state === this.state && detail === '') return;
    this.state = state;
    this.since = Date.now();
    if (state === 'down') this.lastError = detail;
    this.onEvent({ state, detail, at: this.since });
  }

  start(): void {
    this.stopping = false;
    this.set('connecting', `autossh to ${this.argv[this.argv.length - 1]}`);
    const [file, ...args] = this.argv;
    // stdin stays an open pipe we never write to: the server's session holder ends on EOF.
    const child = spawn(file!, args, { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...this.env } });
    this.child = child;
    child.on('error', (e) => this.set('down', `could not start autossh: ${e.message}`));
    readline.createInterface({ input: child.stdout! }).on('line', (line) => {
      const m = /^pipe2me-session: online (\S+) from (\S+)/.exec(line);
      if (m) {
        // The session can open before sshd answers the -R requests: call it up only if no forward
        // failure follows within a moment (ExitOnForwardFailure then ends this ssh).
        clearTimeout(this.upTimer);
        const attempt = ++this.attempt;
        this.upTimer = setTimeout(() => {
          if (attempt !== this.attempt) return;
          this.connects++;
          this.set('up', `session open; the server sees this pod at ${m[2]}`);
        }, UP_GRACE_MS);
      }
    });
    readline.createInterface({ input: child.stderr! }).on('line', (line) => {
      const text = line.replace(/^\d{4}\/\d\d\/\d\d \d\d:\d\d:\d\d /, '').trim();
      if (!text) return;
      if (/restarting ssh|ssh exited|Connection (refused|timed out|closed)|Timeout, server|port forwarding failed|Permission denied|Host key verification failed|closed by remote host|Broken pipe|No route to host|Network is unreachable/i.test(text)) {
        this.attempt++;
        clearTimeout(this.upTimer);
        this.set('down', text);
      } else if (/starting ssh/.test(text)) {
        this.set('connecting', text);
      } else if (!/ssh child pid is|pid is \d+/.test(text)) {
        // Anything else ssh or autossh says is worth a line in the log (not a state change).
        this.onLine?.(text);
      }
    });
    child.on('exit', (code, signal) => {
      this.child = undefined;
      if (this.stopping) {
        this.set('stopped', 'stopped');
        return;
      }
      this.set('down', `autossh ended (${signal ?? `exit ${code}`}); starting it again`);
      this.restartTimer = setTimeout(() => this.start(), this.restartDelayMs);
    });
  }

  /** Have autossh drop the current ssh and connect again now (it handles SIGUSR1 that way), skipping the backoff. */
  kick(): void {
    this.onKick?.();
    this.child?.kill('SIGUSR1');
  }

  /** Called before a reconnect this process asks for itself (the wrapper must not wait then). */
  onKick?: () => void;

  async stop(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.restartTimer);
    clearTimeout(this.upTimer);
    const child = this.child;
    if (!child) {
      this.set('stopped', 'stopped');
      return;
    }
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    // autossh passes SIGTERM on to its ssh and exits.
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }
}
