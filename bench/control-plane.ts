/**
 * The control plane at scale: `add-subdomain` and `remove` (each with its apply), a create through the API,
 * a full and a no-op apply with 0, 10,000 and 50,000 existing subdomains (50,000 is the most one IPv4
 * address holds with one port each), pipe2me-ctl's peak memory, the size of every rendered file, and —
 * measured in the same run, on the same files — the daemons' own floor: what their checkers and reloads
 * cost by themselves.
 *
 *   npx vite-node bench/control-plane.ts
 */
import * as fs from 'node:fs';
import { Stack } from '../test/stack/stack.js';
import { ADDR, curl, dig, waitFor } from '../test/world/index.js';
import { CTL } from '../test/stack/stack.js';
import { QUICK, mr, progress, ratio, standalone, stats, table, type BenchSection, type Stats } from './lib/report.js';
import { seedSubdomains as seed } from './lib/seed.js';
import { openServer, closeServer } from '../src/server/context.js';
import { planOnly } from '../src/apply/apply.js';
import { renderSnapshot } from '../src/state/subdomains.js';
import { renderAll } from '../src/render/render.js';
import { fileSerial } from '../src/daemons/bind.js';

const LEVELS = QUICK ? [0, 1000] : [0, 10000, 50000];
const TOP = LEVELS[LEVELS.length - 1]!;
const REPS = QUICK ? 1 : 5;


async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

/** GNU time's %M (max RSS, KiB) of one pipe2me-ctl run in the server's namespace. */
async function peakRss(stack: Stack, args: string[]): Promise<number> {
  const r = await stack.world.inNs('srv', ['/usr/bin/time', '-f', 'P2M_MAXRSS %M', process.execPath, CTL, '-c', stack.configFile, '-q', ...args], { timeout: 300_000 });
  return Number(/P2M_MAXRSS (\d+)/.exec(r.stderr)?.[1] ?? NaN) / 1024;
}

/** Every rendered file but the key index's manifest (losing that too is measured on its own). */
function removeLiveFiles(stack: Stack, manifestToo = false): void {
  const L = stack.layout;
  if (manifestToo) fs.rmSync(L.sshd.keyList, { force: true });
  for (const f of [L.sshd.config, L.nginx.config, L.nginx.entryMap, L.nginx.sniRouteMap, L.nginx.sniPortMap, L.bind.config, L.bind.zone]) fs.rmSync(f, { force: true });
}

export async function main(): Promise<BenchSection> {
  const stack = await Stack.create({ upnp: false, log: null, portRange: [10000, 65000] });
  const rows: string[][] = [];
  const sizes: string[][] = [];
  const floor: { name: string; s: Stats }[] = [];
  const parts: { name: string; s: Stats; what: string }[] = [];
  let fullTop: Stats | undefined;
  let rss = 0;
  const rssOf: [string, number][] = [];
  try {
    await stack.startServer();
    let have = 0;
    const ctl = (args: string[]) => stack.ctl(args, { timeout: 300_000 });
    for (const n of LEVELS) {
      progress(`seeding to ${n} subdomains`);
      await seed(stack, n - have, have);
      have = n;
      await ctl(['apply', '--full']);
      const adds: number[] = [];
      const removes: number[] = [];
      for (let i = 0; i < REPS; i++) {
        let name = '';
        adds.push(await timed(async () => {
          name = (await stack.ctl<{ name: string }>(['add-subdomain', '--ports', 'https'], { timeout: 300_000 })).json.name;
        }));
        // With the API running the add leaves nginx's maps to the apply the API then runs: the remove is
        // timed on a name the maps hold, not behind that apply.
        const line = `\n${name} "`;
        await waitFor('the name in nginx\'s entry map', async () => fs.readFileSync(stack.layout.nginx.entryMap, 'utf8').includes(line), { timeoutMs: 60_000, intervalMs: 50 });
        removes.push(await timed(() => ctl(['remove', name])));
      }
      // The same through the API, as a pod's setup does it: no process to start, and the API answers only
      // once keys, nginx and DNS are applied. Timed by curl from the client, TLS and nginx included.
      const token = (await stack.ctl<{ token: string }>(['token', 'create', '--max-ports', '1', '--max-subdomains', String(REPS)])).json.token;
      const apiAdds: number[] = [];
      for (let i = 0; i < REPS; i++) {
        const r = await curl(stack.world, `https://server.${stack.config.domain}/v1/subdomains`, {
          method: 'POST', resolve: [`server.${stack.config.domain}:443:${ADDR.server}`], cacert: stack.caFile(),
          headers: { 'content-type': 'application/json' }, data: JSON.stringify({ token, protocols: ['https'] }), timeoutMs: 60_000,
        });
        if (r.status !== 201) throw new Error(`the API answered ${r.status}: ${r.body}`);
        apiAdds.push(r.timings.totalMs);
      }
      have += REPS;
      const fulls: number[] = [];
      for (let i = 0; i < REPS; i++) {
        removeLiveFiles(stack);
        fulls.push(await timed(() => ctl(['apply', '--full'])));
      }
      // The key index's manifest lost as well: apply then reads every pod's index file to compare it.
      removeLiveFiles(stack, true);
      const lost = await timed(() => ctl(['apply', '--full']));
      const noop: number[] = [];
      for (let i = 0; i < REPS; i++) noop.push(await timed(() => ctl(['apply'])));
      const a = stats(adds);
      const f = stats(fulls);
      rows.push([String(n), mr(a, 0), mr(stats(removes), 0), mr(stats(apiAdds), 0), mr(f, 0), lost.toFixed(0), mr(stats(noop), 0)]);
      if (n === TOP) fullTop = f;
      const L = stack.layout;
      const kib = (p: string) => (fs.statSync(p).size / 1024).toFixed(0);
      sizes.push([String(n), kib(L.sshd.keyList), kib(L.nginx.entryMap), kib(L.bind.zone)]);
      progress(`${n}: add ${a.median.toFixed(0)} ms, full apply ${f.median.toFixed(0)} ms`);
    }
    progress('peak memory');
    rssOf.push(['add-subdomain', await peakRss(stack, ['add-subdomain', '--ports', 'https'])], ['list --json', await peakRss(stack, ['list', '--json'])], ['list', await peakRss(stack, ['list'])], ['apply', await peakRss(stack, ['apply'])]);
    removeLiveFiles(stack);
    rssOf.push(['apply --full', await peakRss(stack, ['apply', '--full'])]);
    rss = Math.max(...rssOf.map(([, mb]) => mb));

    progress(`the daemons' own floor at ${TOP}`);
    const L = stack.layout;
    const srv = (argv: string[]) => () => stack.world.inNs('srv', argv, { timeout: 120_000 });
    const measure = async (name: string, fn: () => Promise<unknown>) => {
      const xs: number[] = [];
      for (let i = 0; i < REPS; i++) xs.push(await timed(fn));
      floor.push({ name, s: stats(xs) });
    };
    await measure('nginx -t', srv(['/usr/sbin/nginx', '-t', '-q', '-p', L.nginx.prefix, '-e', 'stderr', '-c', L.nginx.config]));
    await measure('named-checkconf + named-checkzone', async () => {
      await srv(['named-checkconf', L.bind.config])();
      await srv(['named-checkzone', '-q', stack.config.domain, L.bind.zone])();
    });
    await measure('sshd -t', srv(['/usr/sbin/sshd', '-t', '-f', L.sshd.config]));
    await measure('nginx reload (SIGHUP) until new workers answer', async () => {
      const pid = Number(fs.readFileSync(L.nginx.pidFile, 'utf8'));
      process.kill(pid, 'SIGHUP');
      // The reload is done when the master has started its new workers: wait for a worker generation change.
      const t0 = Date.now();
      const kids = () => fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).join(',');
      const first = kids();
      while (kids() === first && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 2));
    });
    const served = async () => Number((await dig(stack.world, { server: ADDR.server, name: stack.config.domain, type: 'SOA', from: 'srv' })).answers[0]?.data.split(/\s+/)[2]);
    const rndc = (...args: string[]) => srv(['rndc', '-k', L.bind.rndcKey, '-s', '127.0.0.1', '-p', String(stack.config.dns.controlPort), ...args])();
    // What BIND costs for a change of one pod: a dynamic update (as apply sends it) until it is served.
    let n = 0;
    await measure('BIND: dynamic update of one record until it is served', async () => {
      const name = `bench-${n++}.${stack.config.domain}`;
      await stack.world.inNs('srv', ['nsupdate', '-v', '-k', L.bind.rndcKey], { timeout: 30_000, input: `server ${ADDR.server} 53\nzone ${stack.config.domain}\nupdate add ${name}. 30 IN A 198.51.100.9\nsend\n` });
      for (;;) if ((await dig(stack.world, { server: ADDR.server, name, from: 'srv' })).answers.length) break;
    });
    // And what a whole load costs: freeze, named's copy written out, the rendered zone in its place, thaw.
    await measure('BIND: whole load (freeze, copy, thaw) until the new serial is served', async () => {
      const before = await served();
      await rndc('freeze', stack.config.domain);
      while (fileSerial(L.bind.servedZone) !== before) await new Promise((r) => setTimeout(r, 5));
      const zone = fs.readFileSync(L.bind.zone, 'utf8');
      const m = /( IN SOA \S+ \S+ )(\d+)/.exec(zone)!;
      const next = before + 1;
      fs.writeFileSync(L.bind.servedZone, zone.replace(m[0], `${m[1]}${next}`));
      fs.rmSync(`${L.bind.servedZone}.jnl`, { force: true });
      await rndc('thaw', stack.config.domain);
      while ((await served()) !== next) await new Promise((r) => setTimeout(r, 5));
    });
    await ctl(['apply', '--full']); // the serial moved under pipe2me: put its own back

    // Where pipe2me's own time goes: the process, and the in-memory work of an apply (run here in this
    // process on the same state and configuration, so that each step can be timed alone).
    progress(`pipe2me's own steps at ${TOP}`);
    const part = async (name: string, what: string, fn: () => unknown) => {
      const xs: number[] = [];
      for (let i = 0; i < REPS; i++) xs.push(await timed(async () => fn()));
      parts.push({ name, what, s: stats(xs) });
    };
    await part('Node start', '`node -e 0`', srv([process.execPath, '-e', '0']));
    await part('Node + loading pipe2me-ctl', '`pipe2me-ctl --help`', srv([process.execPath, CTL, '--help']));
    const ctx = await openServer(stack.configFile);
    try {
      await part('state snapshot', `${ctx.db.engine === 'sqlite' ? 'SQLite' : 'PostgreSQL'}: every subdomain, port and key`, () => renderSnapshot(ctx.db));
      const snap = await renderSnapshot(ctx.db);
      await part('whole render', 'every file in memory', () => renderAll(ctx.config, snap));
      await part('plan, whole', 'snapshot + whole render + reading the live files + comparing', () => planOnly(ctx, undefined, { full: true }));
      await part('plan, patched (nothing changed)', 'journal + reading and hashing the live files + comparing', () => planOnly(ctx));
    } finally {
      await closeServer(ctx);
    }
  } finally {
    await stack.destroy();
  }

  const floorSum = ['nginx -t', 'named-checkconf + named-checkzone', 'nginx reload (SIGHUP) until new workers answer', 'BIND: whole load (freeze, copy, thaw) until the new serial is served']
    .reduce((acc, n) => acc + (floor.find((f) => f.name === n)?.s.median ?? 0), 0);
  const md = [
    '`add-subdomain` (a new subdomain with one https service) and `remove`, each with its apply, and `apply` as an operator runs them:',
    'the API runs, so `add-subdomain` applies the key index and the zone and leaves nginx\'s maps to the apply the API runs after it (the',
    'API already answers the name\'s redirects); each `remove` is timed once the maps hold the name, and applies nginx before it returns.',
    'wall time of the whole `pipe2me-ctl` process, in ms, median [min–max] of 5. "Create through the API" is what a pod\'s setup does: one',
    'POST /v1/subdomains, answered once the name resolves (the zone\'s apply; nginx\'s entry maps follow after the answer, and until they',
    'do nginx asks the API for the redirect; curl\'s total, TLS included). An apply patches the per-pod files',
    'with the subdomains that changed. "Full apply" is `apply --full` after every rendered file but the key index\'s manifest was removed:',
    'everything rendered whole, checked by every checker, renamed and every daemon reloaded; "…manifest lost too" (one run) also removes',
    'the manifest, so that apply reads every pod\'s file in the key index to compare it (it rewrites none);',
    '"no-op apply" finds nothing to do. The seeded subdomains have one https service and a key each.',
    '',
    table(['existing subdomains', 'add-subdomain + apply (CLI)', 'remove + apply (CLI)', 'create through the API', 'full apply', 'full apply, key index manifest lost too', 'no-op apply'], rows),
    '',
    growth(rows),
    '',
    `Peak RSS of pipe2me-ctl at ${TOP} (the most of ${rssOf.map(([what, mb]) => `${what} ${mb.toFixed(0)}`).join(', ')} MB): **${rss.toFixed(0)} MB**.`,
    '',
    'Rendered file sizes (KiB):',
    '',
    table(['subdomains', 'key index manifest (keys.list)', 'entry.map (both entries)', 'zone'], sizes),
    '',
    `The daemons' own floor at ${TOP} subdomains, same run, same files (ms, median [min–max] of 5):`,
    '',
    table(['step', 'ms'], floor.map((f) => [f.name, mr(f.s, 1)])),
    '',
    fullTop ? `Full apply at ${TOP}: ${fullTop.median.toFixed(0)} ms, against a floor of ${floorSum.toFixed(0)} ms (nginx -t + BIND's checks + nginx reload + BIND's whole load, one after the other): **${ratio(fullTop.median, floorSum)}** the daemons' own cost.` : '',
    '',
    `pipe2me's own steps at ${TOP} subdomains, same run (ms, median [min–max] of 5; the in-memory steps timed alone, in the benchmark's process):`,
    '',
    table(['step', 'ms', 'what'], parts.map((p) => [p.name, mr(p.s, 1), p.what])),
    '',
    targets(rows, rss, parts, floor),
  ].join('\n');
  return { title: 'Control plane', markdown: md };
}

/**
 * How each operation grows from an empty server to the most subdomains, in this run: a ratio the machine's
 * speed of the moment (this machine is shared) does not change, unlike the milliseconds.
 */
function growth(rows: string[][]): string {
  const first = rows[0];
  const last = rows[rows.length - 1];
  if (!first || !last || first === last) return '';
  const med = (cell: string) => Number(cell.split(' ')[0]);
  const names = ['add-subdomain', 'remove', 'create through the API', 'full apply', 'no-op apply'];
  const cols = [1, 2, 3, 4, 6];
  return `From ${first[0]} to ${last[0]} subdomains, same run: ${cols.map((c, i) => `${names[i]} ×${(med(last[c]!) / med(first[c]!)).toFixed(2)}`).join(', ')}.`;
}

/** The targets at 50,000, and what the figures of this run say about a miss. */
function targets(rows: string[][], rss: number, parts: { name: string; s: Stats }[], floor: { name: string; s: Stats }[]): string {
  const top = rows.find((r) => r[0] === String(TOP));
  if (!top) return '';
  const med = (cell: string) => Number(cell.split(' ')[0]);
  const [add, remove, api, full, noop] = [med(top[1]!), med(top[2]!), med(top[3]!), med(top[4]!), med(top[6]!)];
  const p = (n: string) => parts.find((x) => x.name === n)?.s.median ?? 0;
  const f = (n: string) => floor.find((x) => x.name.startsWith(n))?.s.median ?? 0;
  const verdict = (v: number, t: number) => (v <= t ? 'met' : 'missed');
  // A removal of one pod: nginx checks and reloads; BIND takes a dynamic update (no check, no reload).
  const checks = f('nginx -t');
  const reloads = Math.max(f('nginx reload'), f('BIND: dynamic update'));
  const start = p('Node + loading pipe2me-ctl');
  return [
    `**Targets at ${TOP} subdomains**`,
    `- API create ≤ 300 ms: **${verdict(api, 300)}** (${api} ms).`,
    `- CLI add-subdomain ≤ 500 ms: **${verdict(add, 500)}** (${add} ms); remove ≤ 500 ms: **${verdict(remove, 500)}** (${remove} ms).`,
    `- No-op apply ≤ 300 ms: **${verdict(noop, 300)}** (${noop} ms). Full apply ≤ 2000 ms: **${verdict(full, 2000)}** (${full} ms).`,
    `- Peak RSS ≤ 200 MB: **${verdict(rss, 200)}** (${rss.toFixed(0)} MB).`,
    '',
    `Where a removal through the CLI goes (an add skips nginx's part when the API answers for the name): a fresh process (Node and the bundled CLI: ${start.toFixed(0)} ms, of which Node alone ${p('Node start').toFixed(0)}),`,
    `pipe2me's own work (a patched plan that finds nothing: ${p('plan, patched (nothing changed)').toFixed(0)} ms, against ${p('plan, whole').toFixed(0)} ms rendering everything whole),`,
    `then the daemons: nginx -t (${checks.toFixed(0)} ms) and, side by side, nginx's reload and BIND's dynamic update (the slower: ${reloads.toFixed(0)} ms;`,
    `a whole BIND load would cost ${f('BIND: whole load').toFixed(0)} ms and its checks ${f('named-checkconf').toFixed(0)} ms). Node's start-up, nginx's check and the reloads alone come to ${(start + checks + reloads).toFixed(0)} ms:`,
    'nginx reads its whole maps on every reload, and that is what is left of a change\'s cost.',
    `nginx's check and reload alone (${(checks + f('nginx reload')).toFixed(0)} ms at ${TOP}) are ${checks + f('nginx reload') > 300 ? 'above' : 'within'} the API target: below them only an entry that does not`,
    'live in nginx\'s configuration (a lookup at request time, as the key index is for sshd) would go.',
  ].join('\n');
}

await standalone(import.meta, main);
