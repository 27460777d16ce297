/**
 * The state store on its two engines, side by side at 10,000 subdomains:
 *
 * 1. the store layer itself, in this process (SQLite file vs PostgreSQL 15 on loopback, both through the
 *    same Kysely code): one allocation (createSubdomain, a write transaction), 20 allocations at once over
 *    20 connections, reading the whole fleet for rendering, one probe run's results for every pod;
 * 2. the control plane as an operator meets it, in a test world (PostgreSQL in the server's namespace):
 *    `add-subdomain --no-apply`, a create through the API (answered after its apply), a full apply, a no-op
 *    apply — and `node -e 0` measured in the same run, the start of any Node process.
 *
 *   npx vite-node bench/store.ts
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CTL, Stack } from '../test/stack/stack.js';
import { ADDR, curl } from '../test/world/index.js';
import { closeAllPostgres, startPostgres, startPostgresIn } from '../test/stack/postgres.js';
import { QUICK, mr, progress, ratio, standalone, stats, table, type BenchSection, type Stats } from './lib/report.js';
import { seedRows, seedSubdomains, type SeedRows } from './lib/seed.js';
import { openStore, type StoreTarget } from '../src/state/db.js';
import { copyStore } from '../src/state/copy.js';
import { createSubdomain, renderSnapshot, listSubdomains } from '../src/state/subdomains.js';
import { recordProbeRun } from '../src/state/probes.js';
import { newId } from '../src/util/secrets.js';
import { randomEd25519Key } from '../test/stack/seed.js';
import { run } from '../src/util/exec.js';

const N = QUICK ? 1000 : 10_000;
const REPS = QUICK ? 3 : 15;
const CLI_REPS = QUICK ? 2 : 5;
const ENGINES = ['sqlite', 'postgres'] as const;
type Engine = (typeof ENGINES)[number];

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

function fleet(count: number, first: number): SeedRows {
  const rows: SeedRows = { subdomains: [], ports: [], ssh_keys: [] };
  for (let i = 0; i < count; i++) {
    const id = newId();
    const name = `seed-${i}`;
    rows.subdomains.push({ id, name, fqdn: `${name}.pipe.test`, status: 'active', created_at: 1 });
    rows.ports.push({ port: first + i, subdomain_id: id, protocol: 'https', position: 0 });
    const k = randomEd25519Key();
    rows.ssh_keys.push({ subdomain_id: id, algorithm: 'ssh-ed25519', public_key: k.publicKey, fingerprint: k.fingerprint, bits: 256, added_at: 1 });
  }
  return rows;
}

const ctx = { domain: 'pipe.test', range: { first: 10000, last: 65000 }, maxPorts: 4, reserved: [] as string[] };

/** Part 1: the store layer in this process, each engine in turn; then a copy of the SQLite store into an empty PostgreSQL database. */
async function storeLayer(): Promise<{ byEngine: Record<Engine, Record<string, Stats>>; copy: { rows: number; seconds: number } }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'p2m-bench-store-'));
  const out: Partial<Record<Engine, Record<string, Stats>>> = {};
  try {
    const server = await startPostgres();
    const targets: Record<Engine, StoreTarget> = { sqlite: { stateDir: dir }, postgres: { stateDir: dir, url: server.url } };
    for (const engine of ENGINES) {
      // Created (migrated), seeded, then opened: seeding writes SQLite through a handle of its own, and two
      // handles of one SQLite file must not wait on each other inside one process.
      await (await openStore(targets[engine], { create: true })).close();
      progress(`${engine}: seeding ${N} subdomains`);
      await seedRows(targets[engine], () => fleet(N, 10000));
      const store = await openStore(targets[engine]);
      try {
        const create = () => createSubdomain(store, { protocols: ['https'], expiresAt: null }, ctx);
        await create();
        const one: number[] = [];
        for (let i = 0; i < REPS; i++) one.push(await timed(create));
        const snapshot: number[] = [];
        for (let i = 0; i < Math.max(3, REPS / 3); i++) snapshot.push(await timed(() => renderSnapshot(store)));
        const subs = await listSubdomains(store);
        const run = (streak: number) => subs.map((x) => ({
          subdomainId: x.id, family: 4 as const, address: '198.51.100.7', ok: false, route: 'server' as const, detail: { reason: 'no router mappings reported' },
          decision: { route: 'server' as const, direct: null, reason: 'no router mappings reported', streak },
        }));
        const probe: number[] = [];
        for (let i = 0; i < Math.max(2, REPS / 5); i++) probe.push(await timed(() => recordProbeRun(store, 1_800_000_000 + i * 60, run(i))));
        out[engine] = { one: stats(one), snapshot: stats(snapshot), probe: stats(probe) };
      } finally {
        await store.close();
      }
    }
    // The move: the SQLite store (now with its probe history) into an empty database of the same server.
    const fresh = await startPostgres();
    const from = await openStore(targets.sqlite);
    const to = await openStore({ stateDir: dir, url: fresh.url }, { create: true });
    try {
      progress('copying the SQLite store into PostgreSQL');
      const r = await copyStore(from, to);
      return { byEngine: out as Record<Engine, Record<string, Stats>>, copy: { rows: r.rows, seconds: r.seconds } };
    } finally {
      await from.close();
      await to.close();
    }
  } finally {
    await closeAllPostgres();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Part 2: the control plane through the CLI and the API, in a world. */
async function controlPlane(engine: Engine): Promise<Record<string, Stats>> {
  const stack = await Stack.create({ upnp: false, log: null, portRange: [10000, 65000] });
  try {
    await stack.startServer();
    progress(`${engine}: seeding ${N} subdomains in the world`);
    await seedSubdomains(stack, N, 0);
    const ctl = (args: string[]) => stack.ctl(args, { timeout: 300_000 });
    if (engine === 'postgres') {
      // The PostgreSQL server lives in the server's namespace (this process cannot reach it): the seeded
      // store moves there the way an operator's would, with state copy, and the API is started again on it.
      const pg = await startPostgresIn(stack.world, { host: 'srv', name: 'postgres', address: '127.0.0.1', port: 5432, password: 'bench-store' });
      const passwordFile = stack.world.path('server', 'db.password');
      fs.writeFileSync(passwordFile, 'bench-store\n', { mode: 0o600 });
      const url = `postgres://${pg.user}@127.0.0.1:5432/${pg.database}`;
      await stack.world.stop('api');
      await ctl(['state', 'copy', '--to', url, '--password-file', passwordFile]);
      fs.appendFileSync(stack.configFile, `\nstate:\n  url: ${url}\n  password_file: ${passwordFile}\n`);
      await stack.world.start({ name: 'api-pg', host: 'srv', argv: [process.execPath, CTL, '-c', stack.configFile, 'serve'], ready: () => stack.world.waitTcp('srv', '127.0.0.1', stack.config.http.apiPort) });
      if ((await stack.ctl<{ engine: string }>(['state', 'info'])).json.engine !== 'postgres') throw new Error('the world did not switch to PostgreSQL');
    }
    await ctl(['apply', '--full']);
    const node: number[] = [];
    for (let i = 0; i < CLI_REPS; i++) node.push(await timed(() => stack.world.inNs('srv', [process.execPath, '-e', '0'], { timeout: 30_000 })));
    const adds: number[] = [];
    for (let i = 0; i < CLI_REPS; i++) adds.push(await timed(() => ctl(['add-subdomain', '--ports', 'https', '--no-apply'])));
    // 20 processes at once, as in the tests: every one gets its own name and port (writers serialised).
    const burst: number[] = [];
    for (let i = 0; i < Math.max(2, CLI_REPS - 2); i++) burst.push(await timed(() => Promise.all(Array.from({ length: 20 }, () => ctl(['add-subdomain', '--ports', 'https', '--no-apply'])))));
    await ctl(['apply']);
    const token = (await stack.ctl<{ token: string }>(['token', 'create', '--max-ports', '1', '--max-subdomains', String(CLI_REPS)])).json.token;
    const api: number[] = [];
    for (let i = 0; i < CLI_REPS; i++) {
      const r = await curl(stack.world, `https://server.${stack.config.domain}/v1/subdomains`, {
        method: 'POST', resolve: [`server.${stack.config.domain}:443:${ADDR.server}`], cacert: stack.caFile(),
        headers: { 'content-type': 'application/json' }, data: JSON.stringify({ token, protocols: ['https'] }), timeoutMs: 60_000,
      });
      if (r.status !== 201) throw new Error(`the API answered ${r.status}: ${r.body}`);
      api.push(r.timings.totalMs);
    }
    const full: number[] = [];
    for (let i = 0; i < CLI_REPS; i++) full.push(await timed(() => ctl(['apply', '--full'])));
    const noop: number[] = [];
    for (let i = 0; i < CLI_REPS; i++) noop.push(await timed(() => ctl(['apply'])));
    // `state info` reads and digests every table: what a check of the whole store costs.
    const info: number[] = [];
    for (let i = 0; i < Math.min(3, CLI_REPS); i++) info.push(await timed(() => ctl(['state', 'info'])));
    return { node: stats(node), add: stats(adds), burst: stats(burst), api: stats(api), full: stats(full), noop: stats(noop), info: stats(info) };
  } finally {
    await stack.destroy();
  }
}

export async function main(): Promise<BenchSection> {
  const { byEngine: layer, copy } = await storeLayer();
  const cli: Partial<Record<Engine, Record<string, Stats>>> = {};
  for (const e of ENGINES) cli[e] = await controlPlane(e);
  const pg = (await run('/usr/lib/postgresql/15/bin/postgres', ['--version'], { timeout: 10_000 })).stdout.trim();
  const row = (what: string, key: string, src: Partial<Record<Engine, Record<string, Stats>>>, digits = 1) => [what, mr(src.sqlite![key]!, digits), mr(src.postgres![key]!, digits), ratio(src.postgres![key]!.median, src.sqlite![key]!.median)];
  const markdown = [
    `The same Kysely code on both engines at ${N.toLocaleString('en-US')} subdomains (one https port and a key each). SQLite: better-sqlite3 12 on the state directory's file (WAL, synchronous=NORMAL). PostgreSQL: ${pg}, a throwaway server (initdb in a temporary directory, fsync off as in the tests — commits cost more on a real disk), on loopback in part 1 and in the server's namespace in part 2 (the seeded SQLite store moved there with \`state copy\`). Milliseconds, median [min–max].`,
    '',
    `**1. The store layer, in one process** (${REPS} allocations; the reads and probe runs a few times each)`,
    '',
    table(['operation', 'SQLite', 'PostgreSQL', 'PostgreSQL ÷ SQLite'], [
      row('one allocation (createSubdomain: name, port, write transaction)', 'one', layer),
      row(`read the whole fleet for rendering (renderSnapshot, ${N.toLocaleString('en-US')} rows + ports + keys)`, 'snapshot', layer, 0),
      row(`one probe run's results and route decisions for every pod (recordProbeRun)`, 'probe', layer, 0),
    ]),
    '',
    `\`state copy\` of that SQLite store (${N.toLocaleString('en-US')} subdomains and their probe history, ${copy.rows.toLocaleString('en-US')} rows) into an empty PostgreSQL database, counts and digests of every table checked on both sides: **${copy.seconds.toFixed(1)} s**.`,
    '',
    `**2. The control plane through the CLI and the API** (${CLI_REPS} runs each, wall time)`,
    '',
    table(['operation', 'SQLite', 'PostgreSQL', 'PostgreSQL ÷ SQLite'], [
      row('`node -e 0` (any Node process, the floor of every CLI figure)', 'node', cli, 0),
      row('`pipe2me-ctl add-subdomain --no-apply`', 'add', cli, 0),
      row('20 `add-subdomain --no-apply` processes at once (all of them)', 'burst', cli, 0),
      row('create through the API (answered after its apply; curl\'s total)', 'api', cli, 0),
      row('`pipe2me-ctl apply --full`', 'full', cli, 0),
      row('no-op `pipe2me-ctl apply`', 'noop', cli, 0),
      row('`pipe2me-ctl state info` (every table read and digested)', 'info', cli, 0),
    ]),
    '',
    'Writers on PostgreSQL take one advisory transaction lock (as SQLite\'s BEGIN IMMEDIATE takes its write lock), so the 20 at once are serial on both engines; most of their time is 20 Node processes starting on 2 cores. Each PostgreSQL statement is a round trip: the probe writes a run as a few statements per 500 pods, and the route only where it changed.',
  ].join('\n');
  return { title: 'The state store: SQLite and PostgreSQL side by side', markdown };
}

await standalone(import.meta, main);
