/**
 * What seeing the fleet costs: a scrape of /metrics and a load of the status page at 1,000 and 10,000
 * subdomains, and the API's create latency (a pod's setup: POST /v1/subdomains through nginx, timed by curl
 * from the client) side by side without and with a scraper hitting /metrics every second and the status
 * page every 5 s — the two arms alternate in blocks, so drift and load fall on both.
 *
 *   npx vite-node bench/observability.ts
 */
import * as fs from 'node:fs';
import { ADDR, curl } from '../test/world/index.js';
import { Stack } from '../test/stack/stack.js';
import { QUICK, loadAverage, machine, mr, progress, ratio, standalone, stats, table, type BenchSection } from './lib/report.js';
import { seedSubdomains } from './lib/seed.js';
import { sleep } from './lib/kit.js';

const LEVELS = QUICK ? [1000] : [1000, 10000];
const SCRAPES = QUICK ? 3 : 15;
const BLOCKS = QUICK ? 1 : 3;
const PER_BLOCK = QUICK ? 3 : 8;

/** One GET inside the server's namespace (loopback listener): total time (ms) and size (bytes). */
async function get(stack: Stack, path: string, auth?: string): Promise<{ ms: number; bytes: number; status: number }> {
  const args = ['curl', '-sS', '-o', '/dev/null', '-w', '%{http_code} %{time_total} %{size_download}', ...(auth ? ['--config', auth] : []), `http://127.0.0.1:${stack.config.http.apiPort}${path}`];
  const r = await stack.world.inNs('srv', args, { timeout: 60_000 });
  const [status, secs, bytes] = r.stdout.trim().split(' ');
  return { status: Number(status), ms: Number(secs) * 1000, bytes: Number(bytes) };
}

export async function main(): Promise<BenchSection> {
  const t0 = performance.now();
  const stack = await Stack.create({ upnp: false, log: null, portRange: [10000, 65000] });
  try {
    // What is measured is the cost, not the per-address limit: every request here comes from one address.
    await stack.startServer({ configExtra: 'api:\n  rate_per_minute: 100000\n' });
    // The status page's credential, in a curl config file (never on a command line).
    const op = (await stack.ctl<{ name: string; secret: string }>(['operator', 'add', 'bench'])).json;
    const auth = stack.world.path('server', 'bench-auth.curlrc');
    fs.writeFileSync(auth, `user = "${op.name}:${op.secret}"\n`, { mode: 0o600 });

    const scrapeRows: string[][] = [];
    const createRows: string[][] = [];
    let have = 0;
    const load = { before: loadAverage(), after: '' };
    for (const n of LEVELS) {
      progress(`observability: seeding to ${n} subdomains`);
      await seedSubdomains(stack, n - have, have);
      have = n;
      await stack.ctl(['apply', '--full'], { timeout: 300_000 });
      const metrics: { ms: number; bytes: number }[] = [];
      const page: { ms: number; bytes: number }[] = [];
      for (let i = 0; i < SCRAPES; i++) {
        const m = await get(stack, '/metrics');
        if (m.status !== 200) throw new Error(`/metrics answered ${m.status}`);
        metrics.push(m);
        const p = await get(stack, '/status', auth);
        if (p.status !== 200) throw new Error(`/status answered ${p.status}`);
        page.push(p);
      }
      scrapeRows.push([String(n), mr(stats(metrics.map((x) => x.ms)), 1), (metrics[0]!.bytes / 1024).toFixed(1), mr(stats(page.map((x) => x.ms)), 1), (page[0]!.bytes / 1024).toFixed(1)]);

      // Creates, side by side: quiet blocks and blocks under a scraper, alternating.
      const token = (await stack.ctl<{ token: string }>(['token', 'create', '--max-ports', '1', '--max-subdomains', String(2 * BLOCKS * PER_BLOCK)])).json.token;
      const create = async () => {
        const r = await curl(stack.world, `https://server.${stack.config.domain}/v1/subdomains`, {
          method: 'POST', resolve: [`server.${stack.config.domain}:443:${ADDR.server}`], cacert: stack.caFile(),
          headers: { 'content-type': 'application/json' }, data: JSON.stringify({ token, protocols: ['https'] }), timeoutMs: 60_000,
        });
        if (r.status !== 201) throw new Error(`the API answered ${r.status}: ${r.body}`);
        return r.timings.totalMs;
      };
      const quiet: number[] = [];
      const scraped: number[] = [];
      for (let b = 0; b < BLOCKS; b++) {
        for (const arm of b % 2 === 0 ? ['quiet', 'scraped'] : ['scraped', 'quiet']) {
          progress(`observability: ${n}: block ${b + 1}/${BLOCKS}, ${arm}`);
          let stop = false;
          const scraper = arm === 'scraped' ? (async () => {
            for (let i = 0; !stop; i++) {
              await get(stack, '/metrics');
              if (i % 5 === 0) await get(stack, '/status', auth);
              await sleep(1000);
            }
          })() : Promise.resolve();
          for (let i = 0; i < PER_BLOCK; i++) (arm === 'quiet' ? quiet : scraped).push(await create());
          stop = true;
          await scraper;
        }
      }
      have += 2 * BLOCKS * PER_BLOCK;
      createRows.push([String(n), mr(stats(quiet), 0), mr(stats(scraped), 0), ratio(stats(scraped).median, stats(quiet).median)]);
    }
    load.after = loadAverage();
    const markdown = `A scrape of \`/metrics\` (the fleet from the store: a dozen aggregate queries, per-pod series off as shipped) and a load of the status page (its first
page of 100 pods, HTTP Basic as an operator), both from curl on the server's loopback listener, ${SCRAPES} each; then the API's create latency (${PER_BLOCK}
creates per block, ${BLOCKS} blocks per arm, the arms alternating) without a scraper and with one hitting \`/metrics\` every second and the status page every 5 s.
Run time: ${((performance.now() - t0) / 1000).toFixed(0)} s; 1-minute load average ${load.before} → ${load.after}.

${table(['subdomains', '/metrics, ms', '/metrics, KiB', '/status, ms', '/status, KiB'], scrapeRows)}

${table(['subdomains', 'create through the API, no scraper, ms', 'with a scraper, ms', 'ratio'], createRows)}

Machine of this run:

${machine()}
`;
    return { title: 'What seeing the fleet costs', markdown };
  } finally {
    await stack.destroy();
  }
}

await standalone(import.meta, main);
