/**
 * Two relays sharing one PostgreSQL store, pods behind the NAT router, a client on the internet: the pods
 * spread over the relays, each pod's name answers the relay holding its session on every relay's
 * nameserver, and when a relay dies its pods are on the other relay and their names follow within
 * seconds, with nothing left pointing at the dead relay.
 */
import { X509Certificate } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ADDR, SLOT1, curl, dig, waitFor, type HostName } from '../world/index.js';
import { CTL, DOMAIN } from '../stack/stack.js';
import { RelayFleet } from '../stack/relays.js';
import { stableHash } from '../../src/render/relays.js';
import { layout } from '../../src/render/layout.js';
import { loadConfig } from '../../src/config/load.js';
import { parseCrl } from '../../src/ca/x509.js';
import { SCHEMA_VERSION } from '../../src/state/migrations.js';

const parseCrlSerials = (pem: string) => parseCrl(pem).revokedSerials;

let fleet: RelayFleet | undefined;
const PODS: HostName[] = ['pod', 'pod2', 'pod3'];
/** Names that put two pods' home on relay-a and one on relay-b (the pod's list starts at its home: stableHash % 2). */
const NAMES = pickNames();
const pods: Record<string, { fqdn: string; http: number; slot: number }> = {};
/** Every relay's addresses, one per address slot (the fleet has two: ADDR's and SLOT1's). */
const SLOTS: Record<string, string[]> = { 'relay-a': [ADDR.server, SLOT1.srv], 'relay-b': [ADDR.srv2, SLOT1.srv2] };
/** Where a pod's name points while its tunnel is on `relay`: that relay's address of the pod's slot. */
const at = (relay: string, host: HostName) => SLOTS[relay]![pods[host]!.slot]!;

function pickNames(): string[] {
  const byHome: string[][] = [[], []];
  for (let i = 0; byHome[0]!.length < 2 || byHome[1]!.length < 1; i++) {
    const n = `node-${i}`;
    byHome[stableHash(n) % 2]!.push(n);
  }
  return [byHome[0]![0]!, byHome[0]![1]!, byHome[1]![0]!];
}

function f(): RelayFleet {
  if (!fleet) throw new Error('the fleet is not up (its set-up failed)');
  return fleet;
}

const relayOf = (host: HostName) => f().relayOf(host);
/** relay-b's CRL as relay-a published it before the revocation test revoked anything. */
let crlBefore: string | undefined;
/** Where `relay`'s nginx serves the CRL of `signer`. */
const servedCrl = (relay: string, signer: string) => path.join(layout(loadConfig(f().relay(relay).configFile)).crlDir, `${signer}.pem`);

/** Writes a record of the CA's into the shared store (what anyone with the store's password can do). */
async function plantRecord(s: RelayFleet, name: string, pem: string): Promise<void> {
  expect(pem).not.toContain('$crl$');
  const sql = `UPDATE ca_files SET content = $crl$${pem}$crl$, updated_at = extract(epoch from now())::bigint WHERE name = '${name}';`;
  const r = await s.world.inNs('db', ['psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-h', ADDR.db, '-U', s.pg.user, '-d', s.pg.database], { input: sql, env: { PGPASSWORD: s.pg.password }, timeout: 15_000 });
  expect(r.exitCode, r.output).toBe(0);
}

/**
 * Plants `pem` as relay-b's CRL in the store until each of `relays` has logged `refusal`. relay-b puts its
 * own CRL back at its next look, which may come before another relay's: so it is planted again each
 * second, as an attacker with the store's password would.
 */
async function plantUntilRefused(s: RelayFleet, pem: string, relays: string[], refusal: string | RegExp): Promise<void> {
  const said = (log: string) => (typeof refusal === 'string' ? log.includes(refusal) : refusal.test(log));
  await waitFor(`${relays.join(' and ')} refuse${relays.length > 1 ? '' : 's'}: ${refusal}`, async () => {
    if (relays.every((r) => said(s.world.procs.log(`${r}-api`)))) return true;
    await plantRecord(s, 'crl/relay-b', pem);
    return false;
  }, { timeoutMs: 25_000, intervalMs: 1000 });
}

/** Runs SQL in the fleet's PostgreSQL as pipe2me's user (what anyone with the store's password could). */
async function runSql(s: RelayFleet, sql: string): Promise<void> {
  const r = await s.world.inNs('db', ['psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-h', ADDR.db, '-U', s.pg.user, '-d', s.pg.database], { input: sql, env: { PGPASSWORD: s.pg.password }, timeout: 15_000 });
  expect(r.exitCode, r.output).toBe(0);
}

async function readRecord(s: RelayFleet, name: string): Promise<string> {
  const r = await s.world.inNs('db', ['psql', '-X', '-qAt', '-h', ADDR.db, '-U', s.pg.user, '-d', s.pg.database, '-c', `SELECT content FROM ca_files WHERE name = '${name}'`], { env: { PGPASSWORD: s.pg.password }, timeout: 15_000 });
  return r.stdout.trim();
}

/** A pod's tunnel bytes in the per-pod series of `relay`'s /metrics (0 where there is none). */
async function podTunnelBytes(s: RelayFleet, relay: string, name: string): Promise<{ in: number; out: number }> {
  const r = await s.world.inNs(s.relay(relay).host, ['curl', '-sS', '--fail', '--max-time', '5', `http://127.0.0.1:${loadConfig(s.relay(relay).configFile).http.apiPort}/metrics`], { timeout: 10_000 });
  const value = (dir: string) => Number(new RegExp(`^pipe2me_pod_tunnel_bytes_total\\{subdomain="${name}",direction="${dir}"\\} (\\d+)$`, 'm').exec(r.stdout)?.[1] ?? 0);
  return { in: value('in'), out: value('out') };
}

/** Whether every pod's name answers `relay` (its address of the pod's slot) on the nameserver at `ns`. */
async function allAnswer(ns: string, relay: string): Promise<boolean> {
  for (const h of PODS) if ((await answers(ns, pods[h]!.fqdn)).join() !== at(relay, h)) return false;
  return true;
}

async function answers(server: string, name: string): Promise<string[]> {
  // Over TCP: the nameservers' response-rate limiting drops a quick series of identical UDP queries.
  const r = await dig(f().world, { from: 'cli', server, name, timeoutMs: 1000, tcp: true });
  return r.ok ? r.answers.filter((a) => a.type === 'A').map((a) => a.data).sort() : [];
}

beforeAll(async () => {
  fleet = await RelayFleet.create({ relays: 2, pods: 3, slots: 2 });
  await fleet.start();
  const t = await fleet.ctl<{ token: string; ca_pin: string }>('relay-a', ['token', 'create', '--max-ports', '2']);
  for (const [i, host] of PODS.entries()) {
    const set = await fleet.pod<{ fqdn: string; slot: number; services: { port: number; protocol: string }[] }>(host, ['setup', '--server', `https://server.${DOMAIN}`, '--token', t.json.token, '--ca-pin', t.json.ca_pin, '--name', NAMES[i]!, '--protocols', 'http', '--ports', '8080'], { timeout: 120_000 });
    pods[host] = { fqdn: set.json.fqdn, http: set.json.services[0]!.port, slot: set.json.slot };
  }
  // Every relay's key index holds every pod's key before the pods start: a pod whose key has not reached
  // its home relay yet (that relay's watcher follows the store within ~2 s) is refused there and takes
  // the next relay, which is right for the pod but not the spread this test is about.
  for (const r of ['relay-a', 'relay-b']) {
    const dir = layout(loadConfig(fleet.relay(r).configFile)).sshd.keysDir;
    await waitFor(`${r}'s key index holds the ${PODS.length} pods' keys`, async () => fs.readdirSync(dir).filter((n) => !n.startsWith('.')).length >= PODS.length, { timeoutMs: 20_000, intervalMs: 100 });
  }
  for (const host of PODS) {
    await fleet.startPodService(host);
    await fleet.startPod(host);
  }
}, 300_000);

afterAll(async () => {
  await fleet?.destroy();
});

afterEach((ctx) => {
  if (ctx.task.result?.state === 'fail') console.log(fleet?.world.dumpLogs(40));
});

describe('two relays, one store', () => {
  it('the pods spread over the relays; every relay\'s nameserver answers each pod\'s name with the address of its slot on the relay its session is on; the client reaches each pod by name, two of them on the same port in two slots', async () => {
    const s = f();
    await waitFor('every pod up', async () => PODS.every((h) => relayOf(h) !== null), { timeoutMs: 30_000, intervalMs: 200 });
    const on = PODS.map((h) => relayOf(h)!);
    expect(new Set(on), `pods on ${on.join(', ')}`).toEqual(new Set(['relay-a', 'relay-b']));
    for (const [i, h] of PODS.entries()) {
      for (const ns of [ADDR.server, ADDR.srv2]) {
        await waitFor(`${pods[h]!.fqdn} on ${ns} answers ${on[i]}`, async () => (await answers(ns, pods[h]!.fqdn)).join() === at(on[i]!, h), { timeoutMs: 15_000, intervalMs: 200 });
      }
      const r = await curl(s.world, `http://${pods[h]!.fqdn}:${pods[h]!.http}/`, { from: 'cli' });
      expect(r.status, r.error).toBe(200);
      expect(r.body).toContain(h);
    }
    // Address slots: two pods share a port number, each in its own slot (ports are unique per slot), and
    // the client reached both above by name.
    const shared = PODS.filter((h) => PODS.some((o) => o !== h && pods[o]!.http === pods[h]!.http && pods[o]!.slot !== pods[h]!.slot));
    expect(shared.length, JSON.stringify(pods)).toBeGreaterThanOrEqual(2);
    // Each pod's tunnel bytes are its own at the relay its session is on, those sharing a port too (the
    // firewall counts by address and port; an address is a slot).
    for (const [i, h] of PODS.entries()) {
      await waitFor(`${on[i]}'s /metrics counts ${h}'s tunnel bytes`, async () => {
        const bytes = await podTunnelBytes(s, on[i]!, pods[h]!.fqdn.split('.')[0]!);
        return bytes.in > 0 && bytes.out > h.length;
      }, { timeoutMs: 10_000, intervalMs: 500 });
    }
    // The server's own name (API, https entry) answers every relay that is up, on every nameserver.
    for (const ns of [ADDR.server, ADDR.srv2]) {
      await waitFor(`server.${DOMAIN} on ${ns} answers both relays`, async () => (await answers(ns, `server.${DOMAIN}`)).join() === [ADDR.server, ADDR.srv2].sort().join(), { timeoutMs: 10_000, intervalMs: 200 });
    }
    // Each relay mirrors its sessions into the store every second: the list counts every pod within one.
    type List = { relays: { name: string; state: string; sessions: number }[] };
    let list = await s.ctl<List>('relay-b', ['relay', 'list']);
    await waitFor('relay list counts every pod', async () => {
      list = await s.ctl<List>('relay-b', ['relay', 'list']);
      return list.json.relays.reduce((n, r) => n + r.sessions, 0) === PODS.length;
    }, { timeoutMs: 5_000, intervalMs: 300 });
    expect(list.json.relays.map((r) => [r.name, r.state])).toEqual([['relay-a', 'up'], ['relay-b', 'up']]);
  });

  it('every relay signs with a CA key of its own (made there, 0600, never copied): its API\'s certificate and the pods\' verify to the pinned root through the signer\'s intermediate; a revocation on relay-a reaches relay-b\'s CRL, served by every relay', async () => {
    const s = f();
    const ca = (relay: string) => loadConfig(s.relay(relay).configFile).paths.ca;
    const keyA = fs.readFileSync(`${ca('relay-a')}/private/ca.key`);
    const keyB = fs.readFileSync(`${ca('relay-b')}/private/ca.key`);
    expect(keyB.equals(keyA)).toBe(false);
    expect(fs.statSync(`${ca('relay-b')}/private/ca.key`).mode & 0o777).toBe(0o600);
    const root = fs.readFileSync(`${ca('relay-a')}/root.crt`, 'utf8');
    expect(fs.readFileSync(`${ca('relay-b')}/root.crt`, 'utf8')).toBe(root);
    const interB = fs.readFileSync(`${ca('relay-b')}/ca.crt`, 'utf8');
    expect(new X509Certificate(interB).subject).toContain('pipe2me relay-b CA');
    const scratch = (name: string, text: string) => {
      const file = s.world.path('scratch', name);
      fs.mkdirSync(s.world.path('scratch'), { recursive: true });
      fs.writeFileSync(file, text);
      return file;
    };
    const rootFile = scratch('root.pem', root);
    // relay-b's API and https entry, as the client (and a pod refreshing through relay-b) sees them.
    const shown = await s.world.inNs('cli', ['openssl', 's_client', '-connect', `${ADDR.srv2}:443`, '-servername', `server.${DOMAIN}`, '-showcerts', '-verify_return_error', '-CAfile', rootFile], { timeout: 10_000, allowFailure: true, input: '' });
    expect(shown.output, shown.output.slice(0, 2000)).toMatch(/Verify return code: 0 \(ok\)/);
    expect(shown.output).toMatch(/i:CN ?= ?pipe2me relay-b CA/);
    // Every pod's certificate, whichever relay's API signed it, verifies to the root with the chain it was given.
    for (const h of PODS) {
      const full = fs.readFileSync(`${s.podDir(h)}/fullchain.pem`, 'utf8');
      const [leaf, ...chain] = full.split(/(?<=-----END CERTIFICATE-----\n)/).filter((b) => b.includes('BEGIN'));
      const v = await s.world.inNs('cli', ['openssl', 'verify', '-CAfile', rootFile, ...(chain.length ? ['-untrusted', scratch(`${h}-chain.pem`, chain.join(''))] : []), scratch(`${h}.pem`, leaf!)], { timeout: 10_000, allowFailure: true });
      expect(v.exitCode, v.output).toBe(0);
    }
    // relay-b's own wildcard, revoked through relay-a (which never held relay-b's key): within a few
    // heartbeats relay-b's CRL lists it, signed by relay-b's intermediate, as relay-a's nginx serves it.
    const wildcard = new X509Certificate(fs.readFileSync(layout(loadConfig(s.relay('relay-b').configFile)).wildcardCert, 'utf8'));
    const serial = wildcard.serialNumber.toUpperCase();
    crlBefore = fs.readFileSync(servedCrl('relay-a', 'relay-b'), 'utf8');
    await s.ctl('relay-a', ['ca', 'revoke', serial, '--reason', 'superseded']);
    const interFile = scratch('inter-b.pem', interB);
    await waitFor('relay-b\'s CRL on relay-a lists the serial', async () => {
      const got = await curl(s.world, `http://server.${DOMAIN}/crl/relay-b.pem`, { from: 'cli', resolve: [`server.${DOMAIN}:80:${ADDR.server}`] });
      if (got.status !== 200) return false;
      const v = await s.world.inNs('cli', ['openssl', 'crl', '-CAfile', interFile, '-noout', '-text', '-in', scratch('crl-b.pem', got.body)], { timeout: 10_000, allowFailure: true });
      return v.exitCode === 0 && /verify OK/.test(v.output) && v.output.replace(/\s+/g, ' ').toUpperCase().includes(`SERIAL NUMBER: ${serial}`);
    }, { timeoutMs: 15_000, intervalMs: 500 });
    // The root's CRL is there too, on relay-b.
    const rootCrl = await curl(s.world, `http://server.${DOMAIN}/crl.pem`, { from: 'cli', resolve: [`server.${DOMAIN}:80:${ADDR.srv2}`] });
    expect(rootCrl.status).toBe(200);
    expect(rootCrl.body).toMatch(/BEGIN X509 CRL/);
  });

  it('a CRL in the store that its signer did not sign (same issuer name, another key), or an older one of its signer, is not published on any relay: the one served stays and the relay says why', async () => {
    const s = f();
    const served = () => ['relay-a', 'relay-b'].map((r) => fs.readFileSync(servedCrl(r, 'relay-b'), 'utf8'));
    // Each relay publishes every signer's CRL from the store on its own timer: both serve the same one first.
    await waitFor('both relays serve relay-b\'s newest CRL', async () => new Set(served()).size === 1, { timeoutMs: 15_000, intervalMs: 250 });
    const before = served();
    expect(crlBefore, 'the revocation test kept the CRL from before its revocation').toBeDefined();
    // A CRL that lists nothing, signed by a key of the attacker's, under relay-b's intermediate's name.
    const dir = s.world.path('scratch', 'forged');
    fs.mkdirSync(dir, { recursive: true });
    const subject = new X509Certificate(fs.readFileSync(`${loadConfig(s.relay('relay-b').configFile).paths.ca}/ca.crt`, 'utf8')).subject.split('\n').map((l) => `/${l}`).join('');
    fs.writeFileSync(path.join(dir, 'index.txt'), '');
    fs.writeFileSync(path.join(dir, 'crlnumber'), '1000\n');
    fs.writeFileSync(path.join(dir, 'ca.cnf'), `[ca]\ndefault_ca = x\n[x]\ndatabase = ${dir}/index.txt\ncrlnumber = ${dir}/crlnumber\ndefault_md = sha256\ndefault_crl_days = 30\n`);
    await s.world.inNs('cli', ['openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${dir}/k.pem`, '-out', `${dir}/c.pem`, '-days', '2', '-subj', subject], { timeout: 15_000 });
    await s.world.inNs('cli', ['openssl', 'ca', '-config', `${dir}/ca.cnf`, '-gencrl', '-keyfile', `${dir}/k.pem`, '-cert', `${dir}/c.pem`, '-out', `${dir}/crl.pem`], { timeout: 15_000 });
    const forged = fs.readFileSync(`${dir}/crl.pem`, 'utf8');
    for (const [what, pem] of [['not its signer\'s', forged], ['older', crlBefore!]] as const) {
      await plantUntilRefused(s, pem, ['relay-a', 'relay-b'], what === 'older' ? /CRL of relay-b is not published here: its CRL number \d+ is lower than the served one's \(\d+\): an earlier CRL/ : 'CRL of relay-b is not published here: its signature is not its signer');
      expect(served(), `after the ${what} CRL`).toEqual(before);
      // relay-b puts its own CRL back into the store, the very one every relay serves (no new CRL for
      // nothing): a relay that starts later finds a good one there.
      await waitFor(`relay-b's own CRL back in the store after the ${what} one`, async () => (await readRecord(s, 'crl/relay-b')) === before[1]!.trim(), { timeoutMs: 10_000, intervalMs: 500 });
      expect(served(), `after relay-b put its own CRL back (${what})`).toEqual(before);
    }
    // relay-b's intermediate swapped in the store for another CA certificate the root vouches for (the root
    // itself), with a CRL that one signed: not relay-b's, whatever signed it.
    const approved = await readRecord(s, 'relay-ca/relay-b.crt');
    try {
      await plantRecord(s, 'relay-ca/relay-b.crt', fs.readFileSync(`${loadConfig(s.relay('relay-a').configFile).paths.ca}/root.crt`, 'utf8'));
      await plantUntilRefused(s, await readRecord(s, 'crl/root'), ['relay-a'], 'CRL of relay-b is not published here: its signer\'s certificate is not the one the root issued to that relay');
      expect(served()[0], 'relay-a still serves relay-b\'s own CRL').toBe(before[0]);
    } finally {
      await plantRecord(s, 'relay-ca/relay-b.crt', approved + '\n');
    }
    const after = served();
    expect(after.map((p) => parseCrlSerials(p)), 'the revocation is still listed').toEqual(before.map((p) => parseCrlSerials(p)));
  });

  it('which pipe2me each relay runs: relay list shows the schema each relay\'s code knows and names one behind the store; a store migrated past the relays\' code is noticed by each (they keep serving)', async () => {
    const s = f();
    type Listed = { store_schema: number; relays: { name: string; schema: number | null; behind: boolean }[] };
    const list = (await s.ctl<Listed>('relay-a', ['relay', 'list'])).json;
    expect(list.store_schema).toBe(SCHEMA_VERSION);
    expect(list.relays.map((r) => [r.name, r.schema, r.behind])).toEqual([['relay-a', SCHEMA_VERSION, false], ['relay-b', SCHEMA_VERSION, false]]);
    // relay-b as if it ran the release before (its heartbeat records its code's version once, at start).
    await runSql(s, `UPDATE meta SET value = '${SCHEMA_VERSION - 1}' WHERE key = 'relay_schema relay-b';`);
    try {
      const behind = await s.ctl<Listed>('relay-a', ['relay', 'list']);
      expect(behind.json.relays.find((r) => r.name === 'relay-b')).toMatchObject({ schema: SCHEMA_VERSION - 1, behind: true });
      const human = await s.world.inNs(s.relay('relay-a').host, [process.execPath, CTL, '-c', s.relay('relay-a').configFile, 'relay', 'list'], { timeout: 30_000 });
      expect(human.stdout).toContain(`The store is at schema version ${SCHEMA_VERSION}; relay-b still runs an older pipe2me`);
    } finally {
      await runSql(s, `UPDATE meta SET value = '${SCHEMA_VERSION}' WHERE key = 'relay_schema relay-b';`);
    }
    // Another relay's upgrade migrated the store: every running relay says so, and keeps serving.
    await runSql(s, `UPDATE schema_version SET version = ${SCHEMA_VERSION + 1} WHERE id = 1;`);
    try {
      await waitFor('both relays notice the store is newer than their code', async () => ['relay-a', 'relay-b'].every((r) => s.world.procs.log(`${r}-api`).includes(`the state store is at schema version ${SCHEMA_VERSION + 1}, newer than this pipe2me knows (${SCHEMA_VERSION})`)), { timeoutMs: 15_000, intervalMs: 500 });
      for (const h of PODS) expect((await curl(s.world, `http://${pods[h]!.fqdn}:${pods[h]!.http}/`, { from: 'cli' })).status, h).toBe(200);
    } finally {
      await runSql(s, `UPDATE schema_version SET version = ${SCHEMA_VERSION} WHERE id = 1;`);
    }
  });

  it('the probe runs on one relay at a time: runs started on both relays at once never overlap, and a run that finds the lease taken says which relay has it', async () => {
    const s = f();
    const runs = await Promise.all(['relay-a', 'relay-b', 'relay-a', 'relay-b', 'relay-a', 'relay-b'].map(async (r) => {
      const res = await s.ctl<{ skipped?: boolean; relay?: string; probed?: number; durationMs?: number }>(r, ['probe', '--no-apply'], { timeout: 120_000 });
      return { relay: r, end: Date.now(), ...res.json };
    }));
    const ran = runs.filter((r) => !r.skipped).map((r) => ({ ...r, start: r.end - (r.durationMs ?? 0) })).sort((x, y) => x.start - y.start);
    expect(ran.length).toBeGreaterThanOrEqual(1);
    for (const r of ran) expect(r.probed).toBeGreaterThanOrEqual(PODS.length);
    // Each probing stretch ended before the next began (the lease is held from before the first probe to after the last).
    // (1 s of slack: a run's end is seen here when its process has exited, after it gave the lease back.)
    for (let i = 1; i < ran.length; i++) expect(ran[i]!.start, JSON.stringify(ran)).toBeGreaterThanOrEqual(ran[i - 1]!.end - 1000);
    for (const r of runs.filter((x) => x.skipped)) expect(['relay-a', 'relay-b']).toContain(r.relay);
    console.log(`[relays] 6 probe runs started at once on two relays: ${ran.length} ran one after another, ${runs.length - ran.length} found the lease taken`);
  }, 180_000);

  it('relay-a killed: its pods are on relay-b within 10 s, their names answer relay-b within 10 s, the client reaches every pod again, and nothing points at relay-a', async () => {
    const s = f();
    const onA = PODS.filter((h) => relayOf(h) === 'relay-a');
    expect(onA.length).toBeGreaterThan(0);
    const t0 = Date.now();
    s.killRelay('relay-a');
    await waitFor('relay-a\'s pods on relay-b', async () => onA.every((h) => relayOf(h) === 'relay-b'), { timeoutMs: 15_000, intervalMs: 100 });
    const podsBack = Date.now() - t0;
    await waitFor('every name answers relay-b on relay-b\'s nameserver', async () => allAnswer(ADDR.srv2, 'relay-b'), { timeoutMs: 20_000, intervalMs: 100 });
    const dnsMoved = Date.now() - t0;
    console.log(`[relays] relay-a killed: its ${onA.length} pod(s) on relay-b after ${podsBack} ms, every name on relay-b after ${dnsMoved} ms`);
    expect(podsBack).toBeLessThanOrEqual(10_000);
    expect(dnsMoved).toBeLessThanOrEqual(10_000);
    for (const h of PODS) {
      const r = await curl(s.world, `http://${pods[h]!.fqdn}:${pods[h]!.http}/`, { from: 'cli' });
      expect(r.status, `${h}: ${r.error}`).toBe(200);
    }
    // relay-a is marked down, and neither the server's name nor any pod's points at it.
    await waitFor('relay-a marked down', async () => (await s.ctl<{ relays: { name: string; state: string }[] }>('relay-b', ['relay', 'list'])).json.relays.find((r) => r.name === 'relay-a')?.state === 'down', { timeoutMs: 20_000, intervalMs: 250 });
    await waitFor('the server\'s name answers relay-b only', async () => (await answers(ADDR.srv2, `server.${DOMAIN}`)).join() === ADDR.srv2, { timeoutMs: 20_000, intervalMs: 200 });
  });

  it('relay-a returns: it is marked up, the pods stay where they are (nothing flaps), and its nameserver answers what relay-b\'s does', async () => {
    const s = f();
    for (const n of ['sshd', 'nginx', 'named', 'api', 'watch']) await s.world.stop(`relay-a-${n}`).catch(() => undefined);
    await s.startRelay('relay-a');
    await waitFor('relay-a up again', async () => (await s.ctl<{ relays: { name: string; state: string }[] }>('relay-b', ['relay', 'list'])).json.relays.every((r) => r.state === 'up'), { timeoutMs: 15_000, intervalMs: 250 });
    await waitFor('relay-a\'s nameserver answers like relay-b\'s', async () => allAnswer(ADDR.server, 'relay-b'), { timeoutMs: 15_000, intervalMs: 200 });
    // The same zone on both: one serial for one content.
    const soa = async (ns: string) => (await dig(s.world, { from: 'cli', server: ns, name: DOMAIN, type: 'SOA' })).answers[0]?.data.split(' ')[2];
    await waitFor('one serial on both nameservers', async () => (await soa(ADDR.server)) === (await soa(ADDR.srv2)), { timeoutMs: 10_000, intervalMs: 250 });
    await new Promise((r) => setTimeout(r, 5000));
    expect(PODS.map((h) => relayOf(h))).toEqual(PODS.map(() => 'relay-b'));
  });

  it('both relays creating subdomains at once (20 requests at each API, in parallel): no name and no port is given twice', async () => {
    const s = f();
    const t = await s.ctl<{ token: string }>('relay-a', ['token', 'create', '--max-ports', '2', '--max-subdomains', '100']);
    const ca = s.world.path('relays', 'relay-a', 'ca-for-client.pem');
    fs.copyFileSync(layout(loadConfig(s.relay('relay-a').configFile)).caCertFile, ca);
    const create = (address: string) => curl(s.world, `https://server.${DOMAIN}/v1/subdomains`, {
      from: 'cli', method: 'POST', headers: { 'content-type': 'application/json' }, data: JSON.stringify({ token: t.json.token, protocols: ['http', 'tcp'] }),
      resolve: [`server.${DOMAIN}:443:${address}`], cacert: ca, timeoutMs: 60_000,
    });
    const answers = await Promise.all([ADDR.server, ADDR.srv2].flatMap((a) => Array.from({ length: 20 }, () => create(a))));
    for (const a of answers) expect(a.status, `${a.error ?? ''} ${a.body.slice(0, 300)}`).toBe(201);
    const made = answers.map((a) => JSON.parse(a.body) as { name: string; slot: number; ports: { port: number }[] });
    expect(new Set(made.map((m) => m.name)).size).toBe(40);
    // Ports are unique per address slot: never the same slot and port twice; both slots in use.
    expect(new Set(made.flatMap((m) => m.ports.map((p) => `${m.slot}:${p.port}`))).size).toBe(80);
    expect(new Set(made.map((m) => m.slot))).toEqual(new Set([0, 1]));
  }, 180_000);
  it('draining relay-b moves its pods to relay-a make-before-break: no client request fails that is retried once a second later, each pod\'s old session serves until its name has moved, and undrain takes no pod back', async () => {
    const s = f();
    expect(PODS.map((h) => relayOf(h))).toEqual(PODS.map(() => 'relay-b'));
    let stop = false;
    let single = 0;
    let twice = 0;
    let requests = 0;
    const client = (async () => {
      while (!stop) {
        for (const h of PODS) {
          const url = `http://${pods[h]!.fqdn}:${pods[h]!.http}/`;
          requests++;
          if ((await curl(s.world, url, { from: 'cli', timeoutMs: 2000 })).status === 200) continue;
          single++;
          // Make before break: each pod's new session is up before its old one ends, and the old one
          // serves until the name has pointed at the new relay for longer than the TTL; a request that
          // fails all the same is retried once, a second later.
          await new Promise((r) => setTimeout(r, 1000));
          if ((await curl(s.world, url, { from: 'cli', timeoutMs: 2000 })).status !== 200) twice++;
        }
      }
    })();
    try {
      await drainAndCheck();
    } finally {
      // Undrained whatever happened: a relay left draining would fail the tests after this one for no reason of theirs.
      stop = true;
      await client;
      await s.ctl('relay-a', ['relay', 'undrain', 'relay-b'], { allowFailure: true });
    }
    console.log(`[relays] drain of relay-b: ${requests} client requests, ${single} failed once and succeeded on the retry, ${twice} failed twice`);
    expect(twice).toBe(0);
    // Each pod opened its new tunnel while the old one served and took it over once it was up; relay-b cut
    // the old session only after the pod's name had pointed at relay-a for the TTL (5 s here).
    const at = (line: string | undefined) => Date.parse(/^(\S+Z) /.exec(line ?? '')?.[1] ?? '');
    const relayLog = s.world.procs.log('relay-b-api').split('\n');
    for (const [i, h] of PODS.entries()) {
      const podLog = s.world.procs.log(`${h}-pipe2me`);
      expect(podLog, h).toContain('opening a tunnel to the next relay before this one ends');
      const moved = at(podLog.split('\n').find((l) => l.includes('moved to relay relay-a; the old session on relay relay-b serves until that relay ends it')));
      const cut = at(relayLog.find((l) => l.includes('draining: cut the old sessions of') && new RegExp(`[(, ]${NAMES[i]!}[,)]`).test(l)));
      expect(Number.isFinite(moved) && Number.isFinite(cut), `${h}: moved ${moved}, cut ${cut}`).toBe(true);
      expect(cut - moved, `${h}: relay-b cut its old session ${cut - moved} ms after it moved`).toBeGreaterThanOrEqual(5000);
    }
    await waitFor('relay-b up', async () => (await s.ctl<{ relays: { name: string; state: string }[] }>('relay-a', ['relay', 'list'])).json.relays.every((r) => r.state === 'up'), { timeoutMs: 10_000, intervalMs: 250 });
    await new Promise((r) => setTimeout(r, 3000));
    expect(PODS.map((h) => relayOf(h))).toEqual(PODS.map(() => 'relay-a'));
  }, 180_000);

  async function drainAndCheck(): Promise<void> {
    const s = f();
    const drain = await s.ctl<{ sessions_left: number }>('relay-a', ['relay', 'drain', 'relay-b', '--wait', '60'], { timeout: 90_000 });
    expect(drain.json.sessions_left).toBe(0);
    await waitFor('every pod on relay-a', async () => PODS.every((h) => relayOf(h) === 'relay-a'), { timeoutMs: 15_000, intervalMs: 200 });
    await waitFor('every name and the server\'s on relay-a', async () => {
      for (const h of PODS) if ((await answers(ADDR.srv2, pods[h]!.fqdn)).join() !== at('relay-a', h)) return false;
      if ((await answers(ADDR.srv2, `server.${DOMAIN}`)).join() !== ADDR.server) return false;
      return true;
    }, { timeoutMs: 15_000, intervalMs: 200 });
    await new Promise((r) => setTimeout(r, 3000));
    // A pod that tries relay-b while it drains is refused by its key lookup, and goes on to relay-a.
    const listed = await s.ctl<{ relays: { name: string; state: string; sessions: number }[] }>('relay-a', ['relay', 'list']);
    expect(listed.json.relays.find((r) => r.name === 'relay-b')).toMatchObject({ state: 'draining', sessions: 0 });
  }

  it('relay-a cut off (its link blackholed, nothing told): its pods are on relay-b within 10 s and their names answer relay-b within 10 s', async () => {
    const s = f();
    const onB = PODS.filter((h) => relayOf(h) === 'relay-a');
    expect(onB.length).toBe(PODS.length);
    const t0 = Date.now();
    await s.cutRelay('relay-a');
    try {
      await waitFor('relay-a\'s pods on relay-b', async () => onB.every((h) => relayOf(h) === 'relay-b'), { timeoutMs: 20_000, intervalMs: 100 });
      const podsBack = Date.now() - t0;
      await waitFor('every name answers relay-b on relay-b\'s nameserver', async () => allAnswer(ADDR.srv2, 'relay-b'), { timeoutMs: 20_000, intervalMs: 100 });
      const dnsMoved = Date.now() - t0;
      console.log(`[relays] relay-a cut off: its ${onB.length} pod(s) on relay-b after ${podsBack} ms, every name on relay-b after ${dnsMoved} ms`);
      expect(podsBack).toBeLessThanOrEqual(10_000);
      expect(dnsMoved).toBeLessThanOrEqual(10_000);
      for (const h of PODS) expect((await curl(s.world, `http://${pods[h]!.fqdn}:${pods[h]!.http}/`, { from: 'cli' })).status).toBe(200);
    } finally {
      await s.restoreRelay('relay-a');
    }
    await waitFor('relay-a up again', async () => (await s.ctl<{ relays: { state: string }[] }>('relay-a', ['relay', 'list'])).json.relays.every((r) => r.state === 'up'), { timeoutMs: 20_000, intervalMs: 250 });
    // Back, relay-a still held its pods' old connections (nothing told it they died): they are cut at once
    // since each pod has a newer session on relay-b (newest wins), not after sshd's keepalives (~18 s).
    const t1 = Date.now();
    await waitFor('relay-a holds no old session', async () => (await s.ctl<{ relays: { name: string; sessions: number }[] }>('relay-b', ['relay', 'list'])).json.relays.find((r) => r.name === 'relay-a')?.sessions === 0, { timeoutMs: 10_000, intervalMs: 250 });
    console.log(`[relays] relay-a back: its old sessions cut ${Date.now() - t1} ms after it was up again`);
    // Its nameserver answered from its last zone while it was cut off; it follows the store within seconds.
    await waitFor('relay-a\'s nameserver answers like relay-b\'s again', async () => allAnswer(ADDR.server, 'relay-b'), { timeoutMs: 15_000, intervalMs: 200 });
    console.log(`[relays] relay-a back: its nameserver current again ${Date.now() - t1} ms after it was up again`);
  }, 90_000);

  it('PostgreSQL down for 30 s: every tunnel keeps serving throughout, no relay is called down when it returns, and a failover afterwards still works', async () => {
    const s = f();
    // From a fleet that is settled: both relays up, and staying up for a whole lease and more. (Right after
    // the blackhole of the test before, relay-a's store connections can still be in TCP's retransmission
    // backoff for seconds; a heartbeat stuck behind one of them lets its lease run out once more.)
    const states = async () => (await s.ctl<{ relays: { name: string; state: string }[] }>('relay-b', ['relay', 'list'])).json.relays.map((x) => `${x.name}=${x.state}`).join(',');
    let upSince = 0;
    const firstSeen = await states();
    await waitFor('both relays up for 6 s', async () => {
      if ((await states()) !== 'relay-a=up,relay-b=up') upSince = 0;
      else upSince ||= Date.now();
      return upSince > 0 && Date.now() - upSince >= 6000;
    }, { timeoutMs: 60_000, intervalMs: 500 });
    if (firstSeen !== 'relay-a=up,relay-b=up') console.log(`[relays] before the store's outage the relays were ${firstSeen}; waited until both were up`);
    await s.pg.stop('fast');
    const until = Date.now() + 30_000;
    let served = 0;
    try {
      while (Date.now() < until) {
        for (const h of PODS) {
          const r = await curl(s.world, `http://${pods[h]!.fqdn}:${pods[h]!.http}/`, { from: 'cli' });
          expect(r.status, `${h} while the store is down: ${r.error}`).toBe(200);
          served++;
        }
        await new Promise((r) => setTimeout(r, 2000));
      }
    } finally {
      await s.pg.start();
    }
    expect(served).toBeGreaterThan(PODS.length * 5);
    // Every lease ran out while the store was away: a relay must renew its own for a whole lease before it
    // judges the others, so nobody is marked down now.
    const seen = new Set<string>();
    const watchUntil = Date.now() + 10_000;
    while (Date.now() < watchUntil) {
      const r = await s.ctl<{ relays: { name: string; state: string }[] }>('relay-b', ['relay', 'list'], { allowFailure: true });
      for (const x of r.json?.relays ?? []) seen.add(`${x.name}=${x.state}`);
      await new Promise((res) => setTimeout(res, 500));
    }
    expect([...seen].sort()).toEqual(['relay-a=up', 'relay-b=up']);
    // And the fleet still fails over: relay-b (which holds every pod now) killed.
    expect(PODS.map((h) => relayOf(h))).toEqual(PODS.map(() => 'relay-b'));
    const t0 = Date.now();
    s.killRelay('relay-b');
    await waitFor('the pods on relay-a', async () => PODS.every((h) => relayOf(h) === 'relay-a'), { timeoutMs: 15_000, intervalMs: 100 });
    await waitFor('every name answers relay-a', async () => allAnswer(ADDR.server, 'relay-a'), { timeoutMs: 15_000, intervalMs: 100 });
    console.log(`[relays] after the store's outage, relay-b killed: pods and names on relay-a after ${Date.now() - t0} ms`);
    expect(Date.now() - t0).toBeLessThanOrEqual(10_000);
  }, 120_000);
});
