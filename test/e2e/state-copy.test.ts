/**
 * Moving a running server from SQLite to PostgreSQL, as docs/operations.md says: a populated SQLite store
 * (a real pod with its key, certificate and tunnel; 1,000 more subdomains with keys, certificates, probe
 * history; tokens; operators) copied with `pipe2me-ctl state copy` into a PostgreSQL server of the test
 * world. Every row arrives (counts and digests per table, and a refused copy into a non-empty database);
 * pipe2me then runs from PostgreSQL and renders byte-identical files; the pod stays reachable throughout.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ADDR, curl } from '../world/index.js';
import { DOMAIN } from '../stack/stack.js';
import { useStack } from '../stack/hooks.js';
import { startPostgresIn, type PgServer } from '../stack/postgres.js';
import { seedSubdomains } from '../../bench/lib/seed.js';
import { openStore } from '../../src/state/db.js';
import { storeTargetOf } from '../../src/server/context.js';
import { listSubdomains } from '../../src/state/subdomains.js';
import { recordCertificate } from '../../src/state/certificates.js';
import { recordProbeRun } from '../../src/state/probes.js';

interface SetupJson { name: string; services: { url: string }[] }
interface StateInfo { engine: string; schema_version: number; tables: { table: string; rows: number; digest: string }[] }

const API = `https://server.${DOMAIN}`;
let pod: SetupJson;
let pg: PgServer;

const stack = useStack({ upnp: false }, async (stack) => {
  await stack.startServer();
  const t = await stack.ctl<{ token: string; ca_pin: string }>(['token', 'create', '--label', 'copy', '--max-ports', '3']);
  await stack.ctl(['token', 'create', '--label', 'spare', '--max-ports', '1', '--single-use']);
  await stack.ctl(['operator', 'add', 'alice']);
  pod = (await stack.pod<SetupJson>(['setup', '--server', API, '--token', t.json.token, '--ca-pin', t.json.ca_pin, '--protocols', 'http', '--ports', '8080'], { timeout: 120_000 })).json;
  await stack.startPodService('pod');
  await stack.startPod('pod', ['--no-upnp']);
  // 1,000 more subdomains with keys, then a certificate and probe history for each (what a fleet leaves).
  await seedSubdomains(stack, 1000, 0);
  const store = await openStore(storeTargetOf(stack.config));
  try {
    const seeded = (await listSubdomains(store)).filter((s) => s.name.startsWith('seed-'));
    for (const [i, s] of seeded.entries()) {
      await recordCertificate(store, { serial: `5EED${String(i).padStart(6, '0')}`, subdomainId: s.id, fqdn: s.fqdn, kind: 'pod', notBefore: 1_700_000_000, notAfter: 2_000_000_000, sha256: `${i}`.padStart(64, '0') });
    }
    for (let run = 0; run < 3; run++) {
      await recordProbeRun(store, 1_800_000_000 + run * 60, seeded.map((s) => ({
        subdomainId: s.id, family: 4 as const, address: '198.51.100.7', ok: false, route: 'server' as const, detail: { reason: 'no router mappings reported' },
        decision: { route: 'server' as const, direct: null, reason: 'no router mappings reported', streak: 0 },
      })));
    }
  } finally {
    await store.close();
  }
  await stack.ctl(['probe'], { timeout: 120_000 });
  await stack.ctl(['apply', '--full'], { timeout: 120_000 });
  pg = await startPostgresIn(stack.world, { host: 'srv', name: 'postgres', address: '127.0.0.1', port: 5432, password: 'copy-test-secret' });
}, 300_000);

async function tunnelServes(): Promise<boolean> {
  const url = new URL(pod.services[0]!.url);
  const r = await curl(stack().world, url.href, { resolve: [`${url.hostname}:${url.port}:${ADDR.server}`], timeoutMs: 5000 }).catch(() => undefined);
  return Boolean(r?.ok && r.status === 200);
}

/** Every file apply renders (the key index directory included), by path. */
function rendered(): Map<string, string> {
  const L = stack().layout;
  const out = new Map<string, string>();
  const walk = (dir: string) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const f = path.join(dir, e.name);
      if (e.isDirectory()) walk(f);
      else if (!/\.(pid|log|jnl|lock)$|^zone\.db|\.staged/.test(e.name)) out.set(f, fs.readFileSync(f, 'utf8'));
    }
  };
  for (const d of [L.sshd.dir, L.nginx.dir, path.dirname(stack().config.dns.daemon === 'bind' ? L.bind.zone : L.nsd.zone)]) walk(d);
  return out;
}

describe('moving the state store from SQLite to PostgreSQL', () => {
  let before: StateInfo;
  let filesBefore: Map<string, string>;

  it('state copy moves every row and checks every table on both sides', async () => {
    const s = stack();
    // The operator stops what writes (the API here: it renews its sessions' lease every second), then
    // looks and copies: what state info sums up is what the copy must find.
    await s.world.stop('api');
    before = (await s.ctl<StateInfo>(['state', 'info'])).json;
    expect(before.engine).toBe('sqlite');
    const count = (t: string) => before.tables.find((x) => x.table === t)!.rows;
    expect(count('subdomains')).toBe(1001);
    expect(count('ssh_keys')).toBe(1001);
    expect(count('certificates')).toBeGreaterThanOrEqual(1001);
    expect(count('probe_results')).toBeGreaterThanOrEqual(3000);
    expect(count('tokens')).toBe(2);
    // openssl's four files, the three certificates the CA issued (the server's two, the pod's), its CRL.
    expect(count('ca_files')).toBe(4 + 3 + 1);
    filesBefore = rendered();
    // The key index (a file per pod), nginx's maps and the zone: every pod's lines are in what is compared.
    expect(filesBefore.size).toBeGreaterThan(1001);
    expect(filesBefore.get(stack().layout.nginx.entryMap)).toContain('\nseed-999 "');
    const passwordFile = s.world.path('server', 'db.password');
    fs.writeFileSync(passwordFile, 'copy-test-secret\n', { mode: 0o600 });
    const url = `postgres://${pg.user}@127.0.0.1:5432/${pg.database}`;
    const t0 = performance.now();
    const copied = await s.ctl<{ rows: number; seconds: number; tables: { table: string; rows: number; digest: string }[] }>(['state', 'copy', '--to', url, '--password-file', passwordFile], { timeout: 300_000 });
    console.log(`state copy: ${copied.json.rows} rows in ${copied.json.seconds} s (the command: ${((performance.now() - t0) / 1000).toFixed(1)} s)`);
    expect(copied.json.rows).toBe(before.tables.reduce((n, t) => n + t.rows, 0));
    expect(copied.json.tables).toEqual(before.tables);
    expect(copied.stdout).not.toContain('copy-test-secret');
    // A second copy into the same (now full) database is refused, and changes nothing.
    const again = await s.ctl(['state', 'copy', '--to', url, '--password-file', passwordFile], { allowFailure: true, timeout: 120_000 });
    expect(again.exitCode).toBe(5);
    expect(again.stderr).toMatch(/already holds 1001 row\(s\) in subdomains/);
    // The switch: state.url and the password file in the configuration, then the API again.
    fs.appendFileSync(s.configFile, `\nstate:\n  url: ${url}\n  password_file: ${passwordFile}\n`);
    await s.world.start({ name: 'api-pg', host: 'srv', argv: [process.execPath, (await import('../stack/stack.js')).CTL, '-c', s.configFile, 'serve'], ready: () => s.world.waitTcp('srv', '127.0.0.1', s.config.http.apiPort) });
    const after = (await s.ctl<StateInfo>(['state', 'info'])).json;
    expect(after.engine).toBe('postgres');
    expect(after.schema_version).toBe(before.schema_version);
    expect(after.tables).toEqual(before.tables);
  }, 300_000);

  it('from PostgreSQL, apply --full renders byte-identical files, and the pod is reached as before', async () => {
    expect(await tunnelServes()).toBe(true);
    await stack().ctl(['apply', '--full'], { timeout: 120_000 });
    const filesAfter = rendered();
    expect([...filesAfter.keys()].sort()).toEqual([...filesBefore.keys()].sort());
    const differ = [...filesAfter].filter(([f, c]) => filesBefore.get(f) !== c).map(([f]) => f);
    expect(differ).toEqual([]);
    expect(await tunnelServes()).toBe(true);
    // And it goes on from there: a new subdomain is allocated past the copied ports.
    const added = await stack().ctl<{ name: string; ports: { port: number }[] }>(['add-subdomain', '--ports', 'http']);
    expect(added.json.ports[0]!.port).toBeGreaterThan(20000 + 1000);
  }, 300_000);
});
