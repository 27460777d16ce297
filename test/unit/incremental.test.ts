/**
 * Incremental rendering against a full render: random sequences of what changes a fleet (pods added and
 * removed, keys registered and replaced, routes going direct — to addresses the zone may or may not
 * publish — and back, expiry, dns-01 records) are applied to a real state store one step at a time, each
 * step patching the files the previous step left; after every step each per-pod file must be byte for byte
 * what a full render of the state gives. The patch path must really be taken, or this proves nothing.
 */
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Store } from '../../src/state/db.js';
import { createSubdomain, deleteSubdomain, expireDue, listSubdomains, renderSnapshot, setExpiry, setRoute, setSshKey, type CreateSubdomainContext } from '../../src/state/subdomains.js';
import { addChallenges, allChallenges, queueOrder, removeChallenges } from '../../src/state/acme.js';
import { renderForApply, recordRendered, PATCH_LIMIT, type RenderOutcome } from '../../src/apply/render-state.js';
import { plan, withSerialPlaceholder } from '../../src/apply/plan.js';
import { renderAll } from '../../src/render/render.js';
import { layout, type Layout } from '../../src/render/layout.js';
import type { Unit } from '../../src/render/types.js';
import type { Config } from '../../src/config/types.js';
import { keyFor, testConfig } from '../helpers/fixtures.js';
import { ENGINES, closeTestStores, openTestStore, type TestEngine, type TestStore } from '../helpers/stores.js';
import { patchFile } from '../../src/render/incremental.js';
import { keyListSpec } from '../../src/render/fragments.js';
import { parseKeyList, syncKeyIndex, syncKeyIndexDelta } from '../../src/ssh/key-index.js';

const UNITS: Unit[] = ['keys', 'nginx', 'dns'];

function configIn(root: string, overrides: Record<string, unknown> = {}): Config {
  const p = (x: string) => path.join(root, x);
  return testConfig({
    paths: { state: p('state'), ca: p('state/ca'), sshd: p('sshd'), nginx: p('nginx'), dns: p('dns'), run: p('run'), log: p('log') },
    ports: { first: 20000, last: 29999 },
    ...overrides,
  });
}

/** A server's files and its state store, on one engine. */
interface Fleet {
  dir: string;
  c: Config;
  L: Layout;
  db: Store;
  t: TestStore;
}

async function openFleet(engine: TestEngine): Promise<Fleet> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'p2m-incr-'));
  try {
    const c = configIn(dir);
    const L = layout(c);
    for (const d of [c.paths.state, c.paths.sshd, c.paths.nginx, c.paths.dns]) fs.mkdirSync(d, { recursive: true });
    fs.mkdirSync(L.bind.dir, { recursive: true });
    const t = await openTestStore(engine, { stateDir: c.paths.state });
    return { dir, c, L, db: t.store, t };
  } catch (e) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw e;
  }
}

async function closeFleet(f: Fleet | undefined): Promise<void> {
  if (!f) return;
  try {
    await f.t.cleanup();
  } finally {
    fs.rmSync(f.dir, { recursive: true, force: true });
  }
}

afterAll(closeTestStores);

const perPodPaths = (L: Layout) => [L.sshd.keyList, L.nginx.entryMap, L.nginx.sniRouteMap, L.nginx.sniPortMap, L.bind.zone];
const read = (p: string) => (fs.existsSync(p) ? fs.readFileSync(p, 'utf8') : undefined);

/** What apply does with the files, without the daemons: render, plan (the serial), write, record. */
async function applyFiles(f: Fleet, opts: { full?: boolean } = {}): Promise<RenderOutcome> {
  const { c, L, db } = f;
  const live = new Map(perPodPaths(L).map((p) => [p, read(p)]));
  const out = await renderForApply(c, L, db, UNITS, live, opts);
  const liveFiles = new Map([...live].map(([k, v]) => [k, v === undefined ? undefined : { content: v, mode: 0o644 }]));
  const p = plan(out.files, liveFiles, { storedSerial: null, now: 1_800_000_000 });
  for (const ch of p.changes) if (ch.change !== 'unchanged') fs.writeFileSync(ch.file.path, ch.content);
  // The key index directory follows the manifest as apply makes it: by the patch's delta, or by comparison.
  const keys = p.changes.find((ch) => ch.file.path === L.sshd.keyList)!;
  if (out.keyDelta) syncKeyIndexDelta(L.sshd.keysDir, parseKeyList(out.keyDelta.removed.join('\n')), parseKeyList(out.keyDelta.added.join('\n')));
  else syncKeyIndex(L.sshd.keysDir, parseKeyList(keys.before), parseKeyList(keys.content));
  await recordRendered(c, L, db, out);
  return out;
}

/** Every per-pod file equals a full render of the state now (the zone's serial aside: the planner's). */
async function expectEqualToFull(f: Fleet): Promise<void> {
  const { c, L, db } = f;
  const full = renderAll(c, await renderSnapshot(db), UNITS, { challenges: await allChallenges(db) });
  for (const p of perPodPaths(L)) {
    const want = full.find((x) => x.path === p)!.content;
    const have = read(p)!;
    expect(p === L.bind.zone ? withSerialPlaceholder(have) : have, p).toBe(want);
  }
  // One file per key line, holding exactly that line; nothing else.
  const lines = parseKeyList(full.find((x) => x.path === L.sshd.keyList)!.content);
  expect(fs.readdirSync(L.sshd.keysDir).sort()).toEqual([...lines.keys()].sort());
  for (const [file, line] of lines) expect(fs.readFileSync(path.join(L.sshd.keysDir, file), 'utf8')).toBe(line + '\n');
}

function rng(seed: number) {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

const ADDRESSES = ['198.51.100.7', '192.0.2.44', '10.0.0.5', '8.8.4.4', '127.0.0.1', '2001:db8::1'];

/** One change a fleet sees, drawn from the sequence (what, to which subdomain by its place in name order, with what). */
type Change =
  | { op: 'create'; protocols: ('http' | 'https' | 'tcp')[]; passthrough: boolean; name: string | undefined }
  | { op: 'delete' | 'expire' | 'route-server'; at: number }
  | { op: 'key'; at: number; key: string }
  | { op: 'route-direct'; at: number; address: string }
  | { op: 'challenge'; at: number }
  | { op: 'unchallenge' };

/**
 * Draws the next change. `named`: new subdomains get names from the sequence too (instead of generated
 * ones), so that stores given the same sequence hold the same fleet.
 */
function drawChange(r: () => number, count: number, st: { seed: number; keyN: number; nameN: number; ordered: boolean }, named: boolean): Change {
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(r() * xs.length)]!;
  const at = count ? Math.floor(r() * count) : -1;
  const what = r();
  if (what < 0.25 || at < 0) {
    const protocols = [pick(['http', 'https', 'tcp'] as const), ...(r() < 0.5 ? [pick(['http', 'https', 'tcp'] as const)] : [])];
    const passthrough = r() < 0.3;
    // Names that sort differently by bytes and by most locales' rules (hyphens, digits).
    const name = named ? `${pick(['a', 'a-', 'ab', 'b0', 'b-0', 'z'])}${(st.nameN++).toString(36)}` : undefined;
    return { op: 'create', protocols, passthrough, name };
  }
  if (what < 0.4) return { op: 'delete', at };
  if (what < 0.6) return { op: 'key', at, key: `k${st.seed}-${st.keyN++}` };
  if (what < 0.75) return { op: 'route-direct', at, address: pick(ADDRESSES) };
  if (what < 0.85) return { op: 'route-server', at };
  if (what < 0.9) return { op: 'expire', at };
  if (!st.ordered) {
    st.ordered = true;
    return { op: 'challenge', at };
  }
  st.ordered = false;
  return { op: 'unchallenge' };
}

/** Applies a change to one fleet's store (`order`: the fleet's pending ACME order, if any). */
async function applyChange(f: Fleet, ch: Change, ctx: CreateSubdomainContext, order: { id: string | null }): Promise<void> {
  const { db } = f;
  if (ch.op === 'create') {
    await createSubdomain(db, { ...(ch.name !== undefined ? { name: ch.name } : {}), protocols: ch.protocols, passthrough: ch.passthrough, expiresAt: null }, ctx);
    return;
  }
  if (ch.op === 'unchallenge') {
    await removeChallenges(db, order.id!);
    order.id = null;
    return;
  }
  const s = (await listSubdomains(db))[ch.at]!;
  if (ch.op === 'delete') await deleteSubdomain(db, s.id);
  else if (ch.op === 'key') await setSshKey(db, s.id, { algorithm: 'ssh-ed25519', ...keyFor(ch.key), bits: 256 });
  else if (ch.op === 'route-direct') await setRoute(db, s.id, 4, { route: 'direct', direct: ch.address, reason: 'test', streak: 3 });
  else if (ch.op === 'route-server') await setRoute(db, s.id, 4, { route: 'server', direct: null, reason: 'test', streak: 0 });
  else if (ch.op === 'expire') {
    await setExpiry(db, s.id, 1);
    await expireDue(db);
  } else {
    order.id = (await queueOrder(db, { subdomainId: s.id, purpose: 'pod', names: [s.fqdn], csrPem: 'x', keySha256: 'y' })).id;
    await addChallenges(db, order.id, [{ owner: `_acme-challenge.${s.fqdn}`, value: 'A'.repeat(43) }]);
  }
}

describe.each(ENGINES)('incremental rendering (%s)', (engine) => {
  let f: Fleet;
  beforeEach(async () => {
    f = await openFleet(engine);
  });
  afterEach(() => closeFleet(f));

  for (const seed of [1, 2, 3]) {
    it(`gives the same files as a full render after every step of a random sequence (seed ${seed})`, async () => {
      const r = rng(seed);
      const { c, L } = f;
      const ctx = { domain: c.domain, range: { first: 20000, last: 29999 }, maxPorts: 3, reserved: ['server', 'ns2'] };
      for (let i = 0; i < 40; i++) await createSubdomain(f.db, { protocols: ['http', 'https', 'tcp'].filter(() => r() < 0.6).concat('http').slice(0, 3) as never, passthrough: r() < 0.3, expiresAt: null }, ctx);
      await applyFiles(f, { full: true });
      await expectEqualToFull(f);
      let patched = 0;
      const st = { seed, keyN: 0, nameN: 0, ordered: false };
      const order = { id: null as string | null };
      for (let step = 0; step < 60; step++) {
        const ops = 1 + Math.floor(r() * 4);
        for (let o = 0; o < ops; o++) await applyChange(f, drawChange(r, (await listSubdomains(f.db)).length, st, false), ctx, order);
        const out = await applyFiles(f);
        patched += out.how.filter((h) => h.mode === 'patched').length;
        await expectEqualToFull(f);
      }
      // Every file of every step after the first was patched, none rendered whole.
      expect(patched).toBe(60 * perPodPaths(L).length);
    });
  }

  it('renders a file whole when it was edited by hand, is missing, or the configuration changed; and then patches again', async () => {
    const { L } = f;
    const ctx = { domain: f.c.domain, range: { first: 20000, last: 29999 }, maxPorts: 3, reserved: [] };
    for (let i = 0; i < 5; i++) await createSubdomain(f.db, { protocols: ['http', 'https'], passthrough: false, expiresAt: null }, ctx);
    await applyFiles(f);
    fs.appendFileSync(L.nginx.entryMap, 'evil "http:1";\n');
    fs.rmSync(L.nginx.sniPortMap);
    await createSubdomain(f.db, { protocols: ['http'], passthrough: false, expiresAt: null }, ctx);
    const out = await applyFiles(f);
    const how = new Map(out.how.map((h) => [h.path, h]));
    expect(how.get(L.nginx.entryMap)).toMatchObject({ mode: 'whole', why: 'the file is not what the last apply wrote' });
    expect(how.get(L.nginx.sniPortMap)).toMatchObject({ mode: 'whole', why: 'the file is missing' });
    expect(how.get(L.sshd.keyList)).toMatchObject({ mode: 'patched', pods: 1 });
    await expectEqualToFull(f);
    expect(read(L.nginx.entryMap)).not.toContain('evil');

    f.c = configIn(f.dir, { dns: { daemon: 'bind', ttl: 45, secondaries: [{ name: 'ns2.pipe.test', ipv4: '203.0.113.5' }] } });
    const changed = await applyFiles(f);
    expect(changed.how.every((h) => h.mode === 'whole' && h.why === 'the configuration or the templates changed')).toBe(true);
    await expectEqualToFull(f);
    await createSubdomain(f.db, { protocols: ['https'], passthrough: true, expiresAt: null }, ctx);
    expect((await applyFiles(f)).how.every((h) => h.mode === 'patched' && h.pods === 1)).toBe(true);
    await expectEqualToFull(f);
  });

  it('proves a file no pod changed since the last apply unchanged without reading it (the zone is read); after a change each file is read once', async () => {
    const { c, L } = f;
    const ctx = { domain: c.domain, range: { first: 20000, last: 29999 }, maxPorts: 3, reserved: [] };
    for (let i = 0; i < 5; i++) await createSubdomain(f.db, { protocols: ['http', 'https'], passthrough: false, expiresAt: null }, ctx);
    await applyFiles(f);
    const reads: string[] = [];
    const counting = { get: (p: string) => (reads.push(p), read(p)) };
    const idle = await renderForApply(c, L, f.db, UNITS, counting);
    expect(reads).toEqual([L.bind.zone]);
    for (const p of perPodPaths(L).filter((x) => x !== L.bind.zone)) {
      const file = idle.files.find((x) => x.path === p)!;
      expect(file.sameAsLive, p).toBe(true);
      // Asked for, its content is the live file's.
      expect(file.content).toBe(read(p));
    }
    const live = new Map(perPodPaths(L).map((p) => [p, { content: read(p)!, mode: fs.statSync(p).mode }]));
    expect(plan(idle.files, live, { storedSerial: null, now: 1_800_000_000 }).changes.filter((ch) => live.has(ch.file.path) && ch.change !== "unchanged").map((ch) => ch.file.path)).toEqual([]);

    // The journal names the pod, not the files its lines are in: each file is read (once) to be patched.
    reads.length = 0;
    await createSubdomain(f.db, { protocols: ['tcp'], passthrough: false, expiresAt: null }, ctx);
    const one = await renderForApply(c, L, f.db, UNITS, counting);
    expect(reads.sort()).toEqual(perPodPaths(L).sort());
    expect(one.files.filter((x) => x.sameAsLive)).toEqual([]);
  });

  it('renders whole when more pods changed than a patch is worth, and the journal forgets what every file took in', async () => {
    const ctx = { domain: f.c.domain, range: { first: 20000, last: 29999 }, maxPorts: 1, reserved: [] };
    await applyFiles(f);
    for (let i = 0; i <= PATCH_LIMIT; i++) await createSubdomain(f.db, { protocols: ['tcp'], passthrough: false, expiresAt: null }, ctx);
    const out = await applyFiles(f);
    expect(out.how.every((h) => h.mode === 'whole' && h.why === `more than ${PATCH_LIMIT} pods changed`)).toBe(true);
    await expectEqualToFull(f);
    expect(Number((await f.db.q.selectFrom('render_journal').select((eb) => eb.fn.countAll().as('n')).executeTakeFirstOrThrow()).n)).toBe(0);
  });
});

describe('incremental rendering on both engines', () => {
  const fleets: Fleet[] = [];
  afterEach(async () => {
    await Promise.allSettled(fleets.map((x) => closeFleet(x)));
    fleets.length = 0;
  });

  it('the same changes give byte for byte the same files from SQLite and from PostgreSQL, after every step', async () => {
    for (const engine of ENGINES) fleets.push(await openFleet(engine));
    const r = rng(7);
    const ctx = (x: Fleet) => ({ domain: x.c.domain, range: { first: 20000, last: 29999 }, maxPorts: 3, reserved: ['server', 'ns2'] });
    const st = { seed: 7, keyN: 0, nameN: 0, ordered: false };
    const orders = fleets.map(() => ({ id: null as string | null }));
    /** Every per-pod file and key index entry, by path in the fleet's directory (which the files name: it is left out). */
    const files = (x: Fleet) => {
      const out = new Map<string, string | undefined>();
      const add = (p: string) => out.set(path.relative(x.dir, p), read(p)?.split(x.dir).join('<dir>'));
      for (const p of perPodPaths(x.L)) add(p);
      for (const k of fs.readdirSync(x.L.sshd.keysDir).sort()) add(path.join(x.L.sshd.keysDir, k));
      return out;
    };
    const same = (step: number) => {
      const [a, b] = fleets.map(files) as [Map<string, string | undefined>, Map<string, string | undefined>];
      expect([...b.keys()], `step ${step}`).toEqual([...a.keys()]);
      for (const [k, v] of a) expect(b.get(k), `step ${step}: ${k}`).toBe(v);
    };
    for (let i = 0; i < 30; i++) {
      const ch = drawChange(r, (await listSubdomains(fleets[0]!.db)).length, st, true);
      for (const [n, x] of fleets.entries()) await applyChange(x, ch, ctx(x), orders[n]!);
    }
    for (const x of fleets) await applyFiles(x, { full: true });
    same(0);
    let patched = 0;
    for (let step = 1; step <= 40; step++) {
      const ops = 1 + Math.floor(r() * 4);
      for (let o = 0; o < ops; o++) {
        const count = (await listSubdomains(fleets[0]!.db)).length;
        expect((await listSubdomains(fleets[1]!.db)).map((s) => s.name)).toEqual((await listSubdomains(fleets[0]!.db)).map((s) => s.name));
        const ch = drawChange(r, count, st, true);
        for (const [n, x] of fleets.entries()) await applyChange(x, ch, ctx(x), orders[n]!);
      }
      for (const x of fleets) {
        const out = await applyFiles(x);
        patched += out.how.filter((h) => h.mode === 'patched').length;
        await expectEqualToFull(x);
      }
      same(step);
    }
    expect(patched).toBe(2 * 40 * perPodPaths(fleets[0]!.L).length);
  });
});

describe('incremental rendering', () => {
  it('refuses to patch a file that holds a line of no pod or does not end with a line, rather than guess', () => {
    const L = layout(configIn('/nonexistent'));
    const spec = keyListSpec(L);
    expect(patchFile(spec, spec.head + 'garbage without a name\n', ['a'], new Map())).toEqual({ refused: expect.stringMatching(/belongs to no pod/) });
    expect(patchFile(spec, `${spec.head}X pipe2me:a\nX pipe2me:b\n`, ['c', 'b'], new Map())).toEqual({ refused: 'the changed pods are not in name order' });
    expect(patchFile(spec, `${spec.head}X pipe2me:a\nX pipe2me:b`, ['c'], new Map())).toEqual({ refused: "its pods' part does not end with a line" });
    expect(patchFile(spec, 'not the head\n', [], new Map())).toEqual({ refused: 'its head is not what the configuration renders' });
  });
});
