/**
 * Incremental rendering against a full render: random sequences of what changes a fleet (pods added and
 * removed, keys registered and replaced, routes going direct — to addresses the zone may or may not
 * publish — and back, expiry, dns-01 records) are applied to a real state store one step at a time, each
 * step patching the files the previous step left; after every step each per-pod file must be byte for byte
 * what a full render of the state gives. The patch path must really be taken, or this proves nothing.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { openDb, type Db } from '../../src/state/db.js';
import { createSubdomain, deleteSubdomain, expireDue, listSubdomains, renderSnapshot, setExpiry, setRoute, setSshKey } from '../../src/state/subdomains.js';
import { addChallenges, allChallenges, queueOrder, removeChallenges } from '../../src/state/acme.js';
import { renderForApply, recordRendered, PATCH_LIMIT } from '../../src/apply/render-state.js';
import { plan, withSerialPlaceholder } from '../../src/apply/plan.js';
import { renderAll } from '../../src/render/render.js';
import { layout, type Layout } from '../../src/render/layout.js';
import type { Unit } from '../../src/render/types.js';
import type { Config } from '../../src/config/types.js';
import { keyFor, testConfig } from '../helpers/fixtures.js';
import { patchFile } from '../../src/render/incremental.js';
import { keyListSpec } from '../../src/render/fragments.js';
import { parseKeyList, syncKeyIndex, syncKeyIndexDelta } from '../../src/ssh/key-index.js';

const UNITS: Unit[] = ['keys', 'nginx', 'dns'];
let dir: string;
let db: Db;
let c: Config;
let L: Layout;

function configIn(root: string, overrides: Record<string, unknown> = {}): Config {
  const p = (x: string) => path.join(root, x);
  return testConfig({
    paths: { state: p('state'), ca: p('state/ca'), sshd: p('sshd'), nginx: p('nginx'), dns: p('dns'), run: p('run'), log: p('log') },
    ports: { first: 20000, last: 29999 },
    ...overrides,
  });
}

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'p2m-incr-'));
  c = configIn(dir);
  L = layout(c);
  for (const d of [c.paths.state, c.paths.sshd, c.paths.nginx, c.paths.dns]) fs.mkdirSync(d, { recursive: true });
  fs.mkdirSync(L.bind.dir, { recursive: true });
  db = openDb(c.paths.state, { create: true });
});
afterEach(() => {
  db.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const perPodPaths = () => [L.sshd.keyList, L.nginx.httpEntryMap, L.nginx.httpsEntryMap, L.nginx.sniRouteMap, L.nginx.sniPortMap, L.bind.zone];
const read = (p: string) => (fs.existsSync(p) ? fs.readFileSync(p, 'utf8') : undefined);

/** What apply does with the files, without the daemons: render, plan (the serial), write, record. */
function applyFiles(opts: { full?: boolean } = {}) {
  const live = new Map(perPodPaths().map((p) => [p, read(p)]));
  const out = renderForApply(c, L, db, UNITS, live, opts);
  const liveFiles = new Map([...live].map(([k, v]) => [k, v === undefined ? undefined : { content: v, mode: 0o644 }]));
  const p = plan(out.files, liveFiles, { storedSerial: null, now: 1_800_000_000 });
  for (const ch of p.changes) if (ch.change !== 'unchanged') fs.writeFileSync(ch.file.path, ch.content);
  // The key index directory follows the manifest as apply makes it: by the patch's delta, or by comparison.
  const keys = p.changes.find((ch) => ch.file.path === L.sshd.keyList)!;
  if (out.keyDelta) syncKeyIndexDelta(L.sshd.keysDir, parseKeyList(out.keyDelta.removed.join('\n')), parseKeyList(out.keyDelta.added.join('\n')));
  else syncKeyIndex(L.sshd.keysDir, parseKeyList(keys.before), parseKeyList(keys.content));
  recordRendered(c, L, db, out);
  return out;
}

/** Every per-pod file equals a full render of the state now (the zone's serial aside: the planner's). */
function expectEqualToFull(): void {
  const full = renderAll(c, renderSnapshot(db), UNITS, { challenges: allChallenges(db) });
  for (const p of perPodPaths()) {
    const want = full.find((f) => f.path === p)!.content;
    const have = read(p)!;
    expect(p === L.bind.zone ? withSerialPlaceholder(have) : have, p).toBe(want);
  }
  // One file per key line, holding exactly that line; nothing else.
  const lines = parseKeyList(full.find((f) => f.path === L.sshd.keyList)!.content);
  expect(fs.readdirSync(L.sshd.keysDir).sort()).toEqual([...lines.keys()].sort());
  for (const [file, line] of lines) expect(fs.readFileSync(path.join(L.sshd.keysDir, file), 'utf8')).toBe(line + '\n');
}

function rng(seed: number) {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

const ADDRESSES = ['198.51.100.7', '192.0.2.44', '10.0.0.5', '8.8.4.4', '127.0.0.1', '2001:db8::1'];

describe('incremental rendering', () => {
  for (const seed of [1, 2, 3]) {
    it(`gives the same files as a full render after every step of a random sequence (seed ${seed})`, () => {
      const r = rng(seed);
      const pick = <T>(xs: readonly T[]) => xs[Math.floor(r() * xs.length)]!;
      const ctx = { domain: c.domain, range: { first: 20000, last: 29999 }, maxPorts: 3, reserved: ['server', 'ns2'] };
      for (let i = 0; i < 40; i++) createSubdomain(db, { protocols: ['http', 'https', 'tcp'].filter(() => r() < 0.6).concat('http').slice(0, 3) as never, passthrough: r() < 0.3, expiresAt: null }, ctx);
      applyFiles({ full: true });
      expectEqualToFull();
      let patched = 0;
      let keyN = 0;
      let order: string | null = null;
      for (let step = 0; step < 60; step++) {
        const ops = 1 + Math.floor(r() * 4);
        for (let o = 0; o < ops; o++) {
          const all = listSubdomains(db);
          const s = all.length ? pick(all) : undefined;
          const what = r();
          if (what < 0.25 || !s) createSubdomain(db, { protocols: [pick(['http', 'https', 'tcp'] as const), ...(r() < 0.5 ? [pick(['http', 'https', 'tcp'] as const)] : [])], passthrough: r() < 0.3, expiresAt: null }, ctx);
          else if (what < 0.4) deleteSubdomain(db, s.id);
          else if (what < 0.6) setSshKey(db, s.id, { algorithm: 'ssh-ed25519', ...keyFor(`k${seed}-${keyN++}`), bits: 256 });
          else if (what < 0.75) setRoute(db, s.id, 4, { route: 'direct', direct: pick(ADDRESSES), reason: 'test', streak: 3 });
          else if (what < 0.85) setRoute(db, s.id, 4, { route: 'server', direct: null, reason: 'test', streak: 0 });
          else if (what < 0.9) {
            setExpiry(db, s.id, 1);
            expireDue(db);
          } else if (order === null) {
            order = queueOrder(db, { subdomainId: s.id, purpose: 'pod', names: [s.fqdn], csrPem: 'x', keySha256: 'y' }).id;
            addChallenges(db, order, [{ owner: `_acme-challenge.${s.fqdn}`, value: 'A'.repeat(43) }]);
          } else {
            removeChallenges(db, order);
            order = null;
          }
        }
        const out = applyFiles();
        patched += out.how.filter((h) => h.mode === 'patched').length;
        expectEqualToFull();
      }
      // Every file of every step after the first was patched, none rendered whole.
      expect(patched).toBe(60 * perPodPaths().length);
    });
  }

  it('renders a file whole when it was edited by hand, is missing, or the configuration changed; and then patches again', () => {
    const ctx = { domain: c.domain, range: { first: 20000, last: 29999 }, maxPorts: 3, reserved: [] };
    for (let i = 0; i < 5; i++) createSubdomain(db, { protocols: ['http', 'https'], passthrough: false, expiresAt: null }, ctx);
    applyFiles();
    fs.appendFileSync(L.nginx.httpEntryMap, 'evil.pipe.test http://evil.example:1;\n');
    fs.rmSync(L.nginx.sniPortMap);
    createSubdomain(db, { protocols: ['http'], passthrough: false, expiresAt: null }, ctx);
    const out = applyFiles();
    const how = new Map(out.how.map((h) => [h.path, h]));
    expect(how.get(L.nginx.httpEntryMap)).toMatchObject({ mode: 'whole', why: 'the file is not what the last apply wrote' });
    expect(how.get(L.nginx.sniPortMap)).toMatchObject({ mode: 'whole', why: 'the file is missing' });
    expect(how.get(L.nginx.httpsEntryMap)).toMatchObject({ mode: 'patched', pods: 1 });
    expectEqualToFull();
    expect(read(L.nginx.httpEntryMap)).not.toContain('evil');

    c = configIn(dir, { dns: { daemon: 'bind', ttl: 45, secondaries: [{ name: 'ns2.pipe.test', ipv4: '203.0.113.5' }] } });
    const changed = applyFiles();
    expect(changed.how.every((h) => h.mode === 'whole' && h.why === 'the configuration or the templates changed')).toBe(true);
    expectEqualToFull();
    createSubdomain(db, { protocols: ['https'], passthrough: true, expiresAt: null }, ctx);
    expect(applyFiles().how.every((h) => h.mode === 'patched' && h.pods === 1)).toBe(true);
    expectEqualToFull();
  });

  it('renders whole when more pods changed than a patch is worth, and the journal forgets what every file took in', () => {
    const ctx = { domain: c.domain, range: { first: 20000, last: 29999 }, maxPorts: 1, reserved: [] };
    applyFiles();
    for (let i = 0; i <= PATCH_LIMIT; i++) createSubdomain(db, { protocols: ['tcp'], passthrough: false, expiresAt: null }, ctx);
    const out = applyFiles();
    expect(out.how.every((h) => h.mode === 'whole' && h.why === `more than ${PATCH_LIMIT} pods changed`)).toBe(true);
    expectEqualToFull();
    expect(db.prepare('SELECT COUNT(*) FROM render_journal').pluck().get()).toBe(0);
  });

  it('refuses to patch a file that holds a line of no pod or does not end with a line, rather than guess', () => {
    const spec = keyListSpec(L);
    expect(patchFile(spec, spec.head + 'garbage without a name\n', ['a'], new Map())).toEqual({ refused: expect.stringMatching(/belongs to no pod/) });
    expect(patchFile(spec, `${spec.head}X pipe2me:a\nX pipe2me:b\n`, ['c', 'b'], new Map())).toEqual({ refused: 'the changed pods are not in name order' });
    expect(patchFile(spec, `${spec.head}X pipe2me:a\nX pipe2me:b`, ['c'], new Map())).toEqual({ refused: "its pods' part does not end with a line" });
    expect(patchFile(spec, 'not the head\n', [], new Map())).toEqual({ refused: 'its head is not what the configuration renders' });
  });
});
