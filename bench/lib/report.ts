/**
 * Shared by the benchmark scripts: statistics (medians of repeated runs, never a single sample), markdown
 * tables, and a description of the machine, so that every figure in BENCHMARKS.md says where it was taken.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';

export interface BenchSection {
  title: string;
  /** Tables and notes, in markdown. */
  markdown: string;
}

export interface Stats {
  n: number;
  median: number;
  min: number;
  max: number;
  p90: number;
}

export function stats(values: readonly number[]): Stats {
  if (values.length === 0) return { n: 0, median: NaN, min: NaN, max: NaN, p90: NaN };
  const v = [...values].sort((a, b) => a - b);
  const q = (p: number) => v[Math.min(v.length - 1, Math.floor(p * (v.length - 1) + 0.5))]!;
  const mid = v.length % 2 ? v[(v.length - 1) / 2]! : (v[v.length / 2 - 1]! + v[v.length / 2]!) / 2;
  return { n: v.length, median: mid, min: v[0]!, max: v[v.length - 1]!, p90: q(0.9) };
}

/** "12.3 [11.9–13.0]" — median and range, the form used throughout BENCHMARKS.md. */
export function mr(s: Stats, digits = 1): string {
  return `${s.median.toFixed(digits)} [${s.min.toFixed(digits)}–${s.max.toFixed(digits)}]`;
}

export function ratio(a: number, b: number, digits = 2): string {
  return b === 0 || !Number.isFinite(a / b) ? '–' : `${(a / b).toFixed(digits)}×`;
}

export function table(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const line = (cells: readonly string[]) => `| ${cells.join(' | ')} |`;
  return [line(headers), line(headers.map(() => '---')), ...rows.map(line)].join('\n');
}

function version(argv: string[], pattern: RegExp): string {
  // Several tools print their version on stderr and exit 0 (ssh -V, nginx -v): read both streams.
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', timeout: 10_000, stdio: ['ignore', 'pipe', 'pipe'] });
  const out = `${r.stdout ?? ''}${r.stderr ?? ''}`;
  if (r.error) return 'unknown';
  return pattern.exec(out)?.[1] ?? (out.trim().split('\n')[0] || 'unknown');
}

export function machine(): string {
  const cpu = /model name\s*:\s*(.*)/.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? os.cpus()[0]?.model ?? 'unknown';
  const debian = fs.existsSync('/etc/debian_version') ? fs.readFileSync('/etc/debian_version', 'utf8').trim() : 'unknown';
  const rows: [string, string][] = [
    ['CPU', `${cpu}, ${os.cpus().length} cores`],
    ['memory', `${(os.totalmem() / 2 ** 30).toFixed(0)} GiB`],
    ['kernel', os.release()],
    ['Debian', debian],
    ['Node.js', process.version],
    ['OpenSSH', version(['ssh', '-V'], /OpenSSH_([^,]+),/)],
    ['nginx', version(['nginx', '-v'], /nginx\/(\S+)/)],
    ['BIND', version(['named', '-v'], /BIND (\S+)/)],
    ['NSD', version(['nsd', '-v'], /NSD version (\S+)/)],
    ['OpenSSL', version(['openssl', 'version'], /OpenSSL (\S+)/)],
    ['iperf3', version(['iperf3', '--version'], /iperf (\S+)/)],
  ];
  return table(['', ''], rows.map(([k, v]) => [k, v]));
}

/**
 * Is this module the script that was run? `node script` leaves it in process.argv[1]; vite-node does
 * not: it rewrites process.argv to [node, vite-node, ...the script's own arguments], so the original
 * command line is read from /proc (the benchmarks need Linux namespaces anyway). A section imported by
 * another script is never on that command line.
 */
function invokedDirectly(meta: ImportMeta): boolean {
  const self = realpath(new URL(meta.url).pathname);
  if (!self) return false;
  if (process.argv[1] && realpath(process.argv[1]) === self) return true;
  let cmdline: string[] = [];
  try {
    cmdline = fs.readFileSync('/proc/self/cmdline', 'utf8').split('\0').filter(Boolean);
  } catch {
    return false;
  }
  return cmdline.slice(1).some((arg) => !arg.startsWith('-') && realpath(arg) === self);
}

function realpath(p: string): string | undefined {
  try {
    return fs.realpathSync(p);
  } catch {
    return undefined;
  }
}

/** Runs a section's main when its file is executed directly, and prints its markdown. */
export async function standalone(meta: ImportMeta, main: () => Promise<BenchSection>): Promise<void> {
  if (!invokedDirectly(meta)) return;
  const s = await main();
  process.stdout.write(`\n## ${s.title}\n\n${s.markdown}\n`);
}

/** Progress on stderr, so that stdout stays the report. */
export function progress(message: string): void {
  process.stderr.write(`… ${message}\n`);
}

/** BENCH_QUICK=1 only checks that a script works (one run of each, short ones): its figures mean nothing. */
export const QUICK = process.env['BENCH_QUICK'] === '1';

/** The 1-minute load average, printed beside figures from this shared machine. */
export function loadAverage(): string {
  return fs.readFileSync('/proc/loadavg', 'utf8').split(' ')[0]!;
}
