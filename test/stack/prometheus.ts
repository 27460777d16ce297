/**
 * A real Prometheus in the test world: Debian's prometheus, a daemon of the world in the server's
 * namespace, scraping the API's loopback listener every second (job "pipe2me", as
 * docs/operations.md's scrape_config) and evaluating the shipped rules (config/pipe2me.rules.yml) every
 * second. Its configuration and its TSDB live in the world's directory; it listens on a free loopback
 * port of `srv` only, and its HTTP API is asked from there (curl in the namespace). The world stops it
 * and removes its files at teardown, like every other daemon of the world.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { HostName, World } from '../world/index.js';
import { waitFor, type WaitOptions } from '../world/index.js';
import { ROOT } from './stack.js';

export const RULES_FILE = path.join(ROOT, 'config', 'pipe2me.rules.yml');
const PROMETHEUS = '/usr/bin/prometheus';

export interface Sample { metric: Record<string, string>; value: number }
export interface Alert { labels: Record<string, string>; annotations: Record<string, string>; state: 'pending' | 'firing'; activeAt: string; value: string }

export interface PrometheusOptions {
  /** The API's loopback port (config.http.apiPort). */
  apiPort: number;
  /** Where it runs (the server's namespace). */
  host?: HostName;
  /** Rule files (default: the shipped rules). */
  ruleFiles?: string[];
}

export class Prometheus {
  private constructor(readonly world: World, readonly host: HostName, readonly port: number, readonly dir: string) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  static async start(world: World, o: PrometheusOptions): Promise<Prometheus> {
    const host = o.host ?? 'srv';
    const dir = world.mkdir('prometheus', 0o755);
    const port = await freeLoopbackPort(world, host);
    const config = path.join(dir, 'prometheus.yml');
    // JSON is YAML: no quoting rules to get wrong.
    fs.writeFileSync(config, JSON.stringify({
      global: { scrape_interval: '1s', evaluation_interval: '1s', scrape_timeout: '1s' },
      rule_files: o.ruleFiles ?? [RULES_FILE],
      scrape_configs: [{ job_name: 'pipe2me', metrics_path: '/metrics', static_configs: [{ targets: [`127.0.0.1:${o.apiPort}`] }] }],
    }, null, 2) + '\n');
    const p = new Prometheus(world, host, port, dir);
    await world.start({
      name: 'prometheus', host,
      argv: [PROMETHEUS, `--config.file=${config}`, `--storage.tsdb.path=${path.join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`,
        '--log.level=info'],
      ready: () => waitFor('prometheus /-/ready', async () => (await p.get('/-/ready')).exitCode === 0, { timeoutMs: 20_000, intervalMs: 100 }),
    });
    return p;
  }

  /** GET a path of its HTTP API from inside the namespace (query parameters url-encoded by curl). */
  private get(p: string, params: Record<string, string> = {}) {
    const args = Object.entries(params).flatMap(([k, v]) => ['--data-urlencode', `${k}=${v}`]);
    return this.world.inNs(this.host, ['curl', '-sS', '--fail', '--max-time', '5', '-G', ...args, `${this.url}${p}`], { allowFailure: true, timeout: 10_000 });
  }

  private async api<T>(p: string, params: Record<string, string> = {}): Promise<T> {
    const r = await this.get(p, params);
    if (r.exitCode !== 0) throw new Error(`prometheus ${p} ${JSON.stringify(params)}: ${r.stderr.trim()} ${r.stdout.trim()}`);
    const doc = JSON.parse(r.stdout) as { status: string; data: T; error?: string };
    if (doc.status !== 'success') throw new Error(`prometheus ${p}: ${doc.error ?? r.stdout}`);
    return doc.data;
  }

  /** An instant query (/api/v1/query): the vector's samples, values as numbers. */
  async query(expr: string): Promise<Sample[]> {
    const d = await this.api<{ resultType: string; result: { metric: Record<string, string>; value: [number, string] }[] }>('/api/v1/query', { query: expr });
    if (d.resultType !== 'vector') throw new Error(`${expr}: a ${d.resultType}, not a vector`);
    return d.result.map((s) => ({ metric: s.metric, value: Number(s.value[1]) }));
  }

  /** The one value of a query that must give one sample (undefined while it gives none). */
  async value(expr: string): Promise<number | undefined> {
    const r = await this.query(expr);
    if (r.length > 1) throw new Error(`${expr}: ${r.length} samples, expected one: ${JSON.stringify(r)}`);
    return r[0]?.value;
  }

  /** Polls a query until its single value satisfies `ok` (Prometheus scrapes every second); returns it. */
  async waitValue(expr: string, ok: (v: number) => boolean, o: WaitOptions = {}): Promise<number> {
    let last: number | undefined;
    try {
      return await waitFor(expr, async () => {
        last = await this.value(expr);
        return last !== undefined && ok(last) ? last : undefined;
      }, { timeoutMs: 8_000, intervalMs: 250, ...o });
    } catch (e) {
      throw new Error(`${expr}: never satisfied within ${o.timeoutMs ?? 8000} ms, last value ${last}: ${(e as Error).message}`);
    }
  }

  /** /api/v1/alerts: every pending or firing alert. */
  async alerts(): Promise<Alert[]> {
    return (await this.api<{ alerts: Alert[] }>('/api/v1/alerts')).alerts;
  }

  /** Waits until an alert with these labels (alertname and any others) is in the given state. */
  async waitAlert(labels: Record<string, string>, state: 'pending' | 'firing' = 'firing', o: WaitOptions = {}): Promise<Alert> {
    const match = (a: Alert) => a.state === state && Object.entries(labels).every(([k, v]) => a.labels[k] === v);
    return waitFor(`alert ${JSON.stringify(labels)} ${state}`, async () => (await this.alerts()).find(match), { timeoutMs: 10_000, intervalMs: 250, ...o });
  }

  /** Each scrape target's health (/api/v1/targets). */
  async targets(): Promise<{ labels: Record<string, string>; health: string; lastError: string; scrapeUrl: string }[]> {
    return (await this.api<{ activeTargets: { labels: Record<string, string>; health: string; lastError: string; scrapeUrl: string }[] }>('/api/v1/targets')).activeTargets;
  }
}

/** A TCP port nothing listens on in the namespace's loopback (the kernel's choice, released again). */
async function freeLoopbackPort(world: World, host: HostName): Promise<number> {
  const r = await world.inNs(host, [process.execPath, '-e',
    "const s = require('node:net').createServer().listen(0, '127.0.0.1', () => { console.log(s.address().port); s.close(); });"]);
  const port = Number(r.stdout.trim());
  if (!Number.isInteger(port) || port <= 0) throw new Error(`no free port in ${host}: ${r.stdout} ${r.stderr}`);
  return port;
}
