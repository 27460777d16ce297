/**
 * The status page's pure rendering (every value escaped, no script, the empty fleet, paging), its
 * credential parsing, and the batched queries behind the list (no query per pod).
 */
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { escapeHtml, html, Html, PAGE_HEADERS, renderList, renderMessage, renderPod, renderUnauthorized, type ListModel, type PodRow } from '../../src/status/page.js';
import { parseBasicAuth, validateOperatorName } from '../../src/status/auth.js';
import type { SubdomainView } from '../../src/server/subdomains.js';
import type { Store } from '../../src/state/db.js';
import { ENGINES, closeTestStores, openTestStore, type TestStore } from '../helpers/stores.js';
import { createSubdomain, subdomainPage } from '../../src/state/subdomains.js';
import { recordProbeRun } from '../../src/state/probes.js';
import { recordCertificate } from '../../src/state/certificates.js';
import { currentCertificates, fleetCounts, latestProbes, soonestCertificateExpiry } from '../../src/state/status-page.js';
import { InputError } from '../../src/util/errors.js';

const NOW = 1_780_000_000;
const iso = (s: number) => new Date(s * 1000).toISOString().replace('.000Z', 'Z');
const HOSTILE = `<script>alert("x")</script>'"><img src=x onerror=alert(1)>`;

function row(name: string, over: Partial<PodRow> = {}): PodRow {
  return {
    name, fqdn: `${name}.pipe.test`, status: 'active', created: iso(NOW - 86400), expires: null, passthrough: false,
    ports: [{ port: 20000, protocol: 'http', url: `http://${name}.pipe.test:20000/` }, { port: 20001, protocol: 'https', url: `https://${name}.pipe.test:20001/` }],
    entry: { http: `http://${name}.pipe.test/`, https: `https://${name}.pipe.test/` },
    route: 'server', route_reason: null, direct_ipv4: null, route6: 'server', route6_reason: null, direct_ipv6: null, reported_ipv6: null,
    key: { algorithm: 'ssh-ed25519', fingerprint: 'SHA256:abc' }, online: null, claim_pending: false,
    probes: {}, certificate: null, ...over,
  };
}

function list(over: Partial<ListModel> = {}): ListModel {
  const rows = over.rows ?? [row('calm-red-otter')];
  return {
    now: NOW, server: 'server.pipe.test', serverIpv6: false, operator: 'alice',
    summary: { pods: rows.length, active: rows.length, direct4: 0, direct6: 0, withIpv6: 0, online: 0, soonest: null, countedAt: NOW },
    rows, q: '', page: 1, perPage: 100, matching: rows.length, ...over,
  };
}

function view(over: Partial<SubdomainView> = {}): SubdomainView {
  const { probes: _p, certificate: _c, ...base } = row('calm-red-otter');
  return {
    ...base, mappings: [], mapping_note: null, ipv6_note: null, probes: [],
    certificate: { serial: null, issuer: null, not_after: null, sha256: null, key_sha256: null, order: null }, ...over,
  };
}

/** Markup from hostile text must not appear; its escaped form must. */
function expectInert(page: string): void {
  expect(page).not.toMatch(/<script/i);
  expect(page).not.toContain('<img src=x');
  expect(page).not.toContain('onerror=alert(1)>');
  expect(page).toContain('&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&#39;&quot;&gt;&lt;img src=x onerror=alert(1)&gt;');
}

describe('escaping', () => {
  it('escapes the five characters that matter in content and quoted attributes, and shows control characters', () => {
    expect(escapeHtml(`<a href="x" title='y'>&</a>`)).toBe('&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;');
    expect(escapeHtml('bell\x07 esc\x1b[31m')).toBe('bell\\x07 esc\\x1b[31m');
    expect(escapeHtml(42)).toBe('42');
  });

  it('html`` escapes every value unless it is Html already; arrays are joined; null, undefined and false are nothing', () => {
    const inner = html`<b>${'<i>'}</b>`;
    expect(html`<p title="${'"'}">${inner}${['<', html`<br>`]}${null}${undefined}${false}${0}</p>`.value)
      .toBe('<p title="&quot;"><b>&lt;i&gt;</b>&lt;<br>0</p>');
    expect(new Html('<x>').toString()).toBe('<x>');
  });
});

describe('the list', () => {
  it('shows every pod with its online state, both routes, the last probes, the certificate and the ports; no script', () => {
    const page = renderList(list({
      serverIpv6: true,
      rows: [
        row('calm-red-otter', {
          online: { since: iso(NOW - 600), from: '203.0.113.2', family: 4 },
          route: 'direct', direct_ipv4: '203.0.113.2', route_reason: 'every port answers as this pod at 203.0.113.2',
          route6: 'direct', direct_ipv6: '2001:db8:77::10', reported_ipv6: '2001:db8:77::10',
          probes: { 4: { at: NOW - 120, ok: true, address: '203.0.113.2', route: 'direct', reason: 'fine' }, 6: { at: NOW - 120, ok: false, address: '2001:db8:77::10', route: 'server', reason: 'http 20000: no http answer' } },
          certificate: { serial: 'AB', issuer: 'private', notAfter: NOW + 80 * 86400 },
        }),
        row('quiet-blue-fox', { certificate: { serial: 'CD', issuer: 'acme', notAfter: NOW + 5 * 86400 }, ports: [{ port: 20002, protocol: 'tcp', url: 'tcp://quiet-blue-fox.pipe.test:20002' }] }),
      ],
    }));
    expect(page.startsWith('<!doctype html>')).toBe(true);
    expect(page).not.toMatch(/<script/i);
    expect(page).not.toMatch(/http-equiv="refresh"/); // the list keeps a search being typed
    expect(page).toContain('<a href="/status/calm-red-otter">calm-red-otter</a>');
    expect(page).toContain('<strong>online</strong> <span class="sub-inline">for 10 min</span>');
    expect(page).toMatch(/from <span class="mono">203\.0\.113\.2<\/span> \(IPv4\)/);
    expect(page).toContain('to the router <span class="mono">203.0.113.2</span>');
    expect(page).toContain('to the pod <span class="mono">2001:db8:77::10</span>');
    expect(page).toMatch(/badge ok">ok<\/span> IPv4 <time[^>]*>2 min ago<\/time>/);
    expect(page).toMatch(/badge bad">failed<\/span> IPv6 .*http 20000: no http answer/);
    expect(page).toContain('<span class="badge ok">80 days left</span><div class="sub">private CA');
    expect(page).toContain('<span class="badge bad">5 days left</span><div class="sub">public (ACME)');
    expect(page).toContain('<span class="proto">tcp</span> 20002');
    expect(page).toContain('quiet-blue-fox</a>');
    expect(page).toContain('offline');
    expect(page).toContain('signed in as alice');
  });

  it('escapes hostile text everywhere it shows: names, reasons, addresses, the search, the operator', () => {
    const page = renderList(list({
      q: HOSTILE, operator: HOSTILE, server: HOSTILE,
      rows: [row(HOSTILE, {
        fqdn: HOSTILE, route_reason: HOSTILE, route6_reason: HOSTILE, reported_ipv6: HOSTILE,
        online: { since: iso(NOW - 5), from: HOSTILE, family: 6 },
        probes: { 4: { at: NOW, ok: false, address: HOSTILE, route: 'server', reason: HOSTILE } },
        ports: [{ port: 1, protocol: HOSTILE, url: HOSTILE }],
      })],
    }));
    expectInert(page);
    // In the search box and in the link to the pod, the value stays inside its attribute.
    expect(page).toContain(`value="${escapeHtml(HOSTILE.slice(0, 200))}"`);
    expect(page).toContain(`href="${escapeHtml(`/status/${encodeURIComponent(HOSTILE)}`)}"`);
  });

  it('the empty fleet says how to add a pod', () => {
    const page = renderList(list({ rows: [], matching: 0, summary: { pods: 0, active: 0, direct4: 0, direct6: 0, withIpv6: 0, online: 0, soonest: null, countedAt: NOW } }));
    expect(page).toContain('No pods yet.');
    expect(page).toContain('pipe2me-ctl token create');
    expect(page).not.toContain('<table class="pods">');
    expect(page).toContain('no certificate issued yet');
  });

  it('a search that matches nothing says so, with the way back', () => {
    const page = renderList(list({ rows: [], matching: 0, q: 'zebra', summary: { pods: 3, active: 3, direct4: 1, direct6: 0, withIpv6: 0, online: 2, soonest: null, countedAt: NOW } }));
    expect(page).toContain('No pod\'s name contains “zebra”.');
    expect(page).toContain('<a href="/status">Show every pod</a>');
  });

  it('pages: where we are, links to the others that keep the search, and none past the ends', () => {
    const rows = Array.from({ length: 100 }, (_, i) => row(`pod-${String(i + 100).padStart(4, '0')}`));
    const page = renderList(list({ rows, matching: 250, page: 2, q: 'pod' }));
    expect(page).toContain('101–200 of 250 pods matching');
    expect(page).toContain('page 2 of 3');
    expect(page).toContain('<a href="/status?q=pod">« first</a>');
    expect(page).toContain('<a href="/status?q=pod">‹ previous</a>');
    expect(page).toContain('<a href="/status?q=pod&amp;page=3">next ›</a>');
    const lastPage = renderList(list({ rows: rows.slice(0, 50), matching: 250, page: 3 }));
    expect(lastPage).toContain('201–250 of 250 pods');
    expect(lastPage).toContain('<span class="off">next ›</span>');
    expect(lastPage).toContain('<a href="/status?page=2">‹ previous</a>');
    const beyond = renderList(list({ rows: [], matching: 250, page: 9, summary: { pods: 250, active: 250, direct4: 0, direct6: 0, withIpv6: 0, online: 0, soonest: null, countedAt: NOW } }));
    expect(beyond).toContain('There is no page 9.');
    const one = renderList(list());
    expect(one).not.toContain('<nav class="pager">');
  });

  it('the summary: pods, online, direct share per family, the soonest certificate', () => {
    const page = renderList(list({ summary: { pods: 12, active: 10, direct4: 4, direct6: 1, withIpv6: 3, online: 9, soonest: { name: 'calm-red-otter', serial: 'AB', issuer: 'private', notAfter: NOW + 12 * 86400 }, countedAt: NOW - 7 } }));
    expect(page).toMatch(/Pods<\/div><div class="value">10<\/div><div class="sub">active · 2 expired/);
    expect(page).toMatch(/Online<\/div><div class="value">9<\/div><div class="sub">90 % of the active pods/);
    expect(page).toMatch(/Direct IPv4 \(A\)<\/div><div class="value">4<\/div><div class="sub">40 %/);
    expect(page).toMatch(/Direct IPv6 \(AAAA\)<\/div><div class="value">1<\/div><div class="sub">10 % · 3 report an IPv6 address/);
    expect(page).toMatch(/Soonest certificate expiry.*12 days left.*href="\/status\/calm-red-otter"/s);
    expect(page).toContain('summary counted 7 s ago');
    expect(renderList(list())).not.toContain('summary counted');
  });

  it('a server without IPv6: no AAAA unless the pod is direct', () => {
    expect(renderList(list({ serverIpv6: false }))).toContain('no AAAA</span> <span class="sub-inline">the server has no IPv6');
    expect(renderList(list({ serverIpv6: true }))).not.toContain('no AAAA');
  });
});

describe('one pod', () => {
  const v = view({
    online: { since: iso(NOW - 30), from: '2001:db8:77::10', family: 6 },
    mappings: [
      { family: 4, external_port: 20000, internal_port: 8080, external_ip: '203.0.113.2', via: 'upnp', lease_seconds: 120, reported: iso(NOW - 60) },
      { family: 4, external_port: 20001, internal_port: 8443, external_ip: '203.0.113.2', via: 'natpmp', lease_seconds: null, reported: iso(NOW - 60) },
      { family: 6, external_port: 20000, internal_port: 20000, external_ip: '2001:db8:77::10', via: 'pinhole', lease_seconds: 3600, reported: iso(NOW - 60) },
      { family: 6, external_port: 20001, internal_port: 20001, external_ip: '2001:db8:77::10', via: 'open', lease_seconds: null, reported: iso(NOW - 60) },
    ],
    mapping_note: HOSTILE,
    ipv6_note: 'pinholes below 1024 refused',
    probes: [
      { at: iso(NOW - 10), family: 6, address: '2001:db8:77::10', ok: false, route: 'server', reason: HOSTILE },
      { at: iso(NOW - 70), family: 4, address: '203.0.113.2', ok: true, route: 'direct', reason: 'every port answers as this pod at 203.0.113.2' },
    ],
    certificate: { serial: '5C1F', issuer: 'acme', not_after: iso(NOW + 40 * 86400), sha256: 'aa', key_sha256: 'bb', order: { id: 'o1', state: 'queued', attempts: 2, next_attempt: iso(NOW + 60), last_error: HOSTILE } },
  });

  it('shows what `show --json` has: online, routes, mappings with how they were made, the probe history, the certificate', () => {
    const page = renderPod({ now: NOW, server: 'server.pipe.test', serverIpv6: true, operator: 'alice', view: v });
    expect(page).toContain('<meta http-equiv="refresh" content="15">');
    expect(page).not.toMatch(/<script/i);
    expect(page).toContain('<span class="mono">203.0.113.2:20000</span>');
    expect(page).toContain('<span class="mono">[2001:db8:77::10]:20000</span>');
    for (const [via, label] of [['upnp', 'UPnP IGD port mapping'], ['natpmp', 'NAT-PMP port mapping'], ['pinhole', 'IGD2 pinhole'], ['open', 'open (nothing filters)']]) {
      expect(page).toContain(`<span class="badge ${via === 'open' ? 'muted' : 'info'}">${via}</span> <span class="sub-inline">${escapeHtml(label)}</span>`);
    }
    expect(page).toContain('permanent');
    expect(page).toMatch(/<td>IPv4<\/td><td><span class="badge ok">ok<\/span><\/td><td><span class="mono">203\.0\.113\.2<\/span><\/td><td><span class="badge ok">direct<\/span><\/td><td>every port answers/);
    expect(page).toMatch(/<td>IPv6<\/td><td><span class="badge bad">failed<\/span><\/td>/);
    expect(page).toContain('from <span class="mono">2001:db8:77::10</span> (IPv6)');
    expect(page).toContain('the public ACME CA');
    expect(page).toContain('<span class="mono">o1</span> <span class="badge warn">queued</span> attempt 2');
    expect(page).toContain('pinholes below 1024 refused');
    expectInert(page);
  });

  it('a pod with nothing yet: no mappings, not probed, no certificate', () => {
    const page = renderPod({ now: NOW, server: 'server.pipe.test', serverIpv6: false, operator: 'alice', view: view({ key: null, claim_pending: true }) });
    expect(page).toContain('none reported');
    expect(page).toContain('not probed yet');
    expect(page).toContain('none issued yet');
    expect(page).toContain('none registered yet');
    expect(page).toContain('claim pending');
  });
});

describe('the other answers', () => {
  it('401 and messages are short pages, escaped; the headers forbid everything but inline style', () => {
    expect(renderUnauthorized()).toContain('pipe2me-ctl operator add NAME');
    expectInert(renderMessage('x', HOSTILE));
    expectInert(renderMessage(HOSTILE, 'y', { now: NOW, server: 's', serverIpv6: false, operator: 'alice' }));
    expect(PAGE_HEADERS['content-security-policy']).toMatch(/^default-src 'none'; style-src 'unsafe-inline'; img-src data:/);
    expect(PAGE_HEADERS).toMatchObject({ 'x-content-type-options': 'nosniff', 'cache-control': 'no-store', 'x-frame-options': 'DENY' });
  });
});

describe('operator credentials', () => {
  const secret = 'p2mo_' + 'A'.repeat(43);
  const basic = (s: string) => 'Basic ' + Buffer.from(s).toString('base64');

  it('takes a well-formed name and p2mo_ secret, nothing else', () => {
    expect(parseBasicAuth(basic(`alice:${secret}`))).toEqual({ name: 'alice', secret });
    expect(parseBasicAuth(`basic  ${Buffer.from(`alice:${secret}`).toString('base64')}`)).toEqual({ name: 'alice', secret });
    expect(parseBasicAuth(undefined)).toBeUndefined();
    expect(parseBasicAuth('Bearer ' + secret)).toBeUndefined();
    expect(parseBasicAuth(basic(`Alice:${secret}`))).toBeUndefined();
    expect(parseBasicAuth(basic(`alice:p2ms_${'A'.repeat(43)}`))).toBeUndefined();
    expect(parseBasicAuth(basic(`alice${secret}`))).toBeUndefined();
    expect(parseBasicAuth(basic('alice:'))).toBeUndefined();
    expect(parseBasicAuth('Basic !!!')).toBeUndefined();
  });

  it('operator names: a clear error for a bad one', () => {
    expect(validateOperatorName('night-shift')).toBe('night-shift');
    for (const bad of ['', 'Alice', '1st', '-x', 'a'.repeat(33), 'a b', 'é']) {
      expect(() => validateOperatorName(bad)).toThrow(InputError);
    }
    expect(() => validateOperatorName('Alice')).toThrow(/not a valid operator name/);
  });
});

afterAll(closeTestStores);

describe.each(ENGINES)('the batched queries behind the list (%s)', (engine) => {
  let t: TestStore;
  let db: Store;
  const ctx = { domain: 'pipe.test', range: { first: 20000, last: 20999 }, maxPorts: 4, reserved: [] };

  beforeEach(async () => {
    t = await openTestStore(engine);
    db = t.store;
  });
  afterEach(() => t.cleanup());

  it('a page in name order with the matching count; the latest probe per family and the current certificate of each pod', async () => {
    const names = ['alpha-one', 'bravo-two', 'charlie-one', 'delta-two', 'echo-one'];
    const ids = new Map<string, string>();
    for (const n of names) ids.set(n, (await createSubdomain(db, { name: n, protocols: ['http', 'https'], expiresAt: null }, ctx)).record.id);
    const page = await subdomainPage(db, { contains: 'one', limit: 2, offset: 0 });
    expect(page.total).toBe(3);
    expect(page.records.map((r) => r.name)).toEqual(['alpha-one', 'charlie-one']);
    expect(page.records[0]!.ports.map((p) => p.protocol)).toEqual(['http', 'https']);
    expect((await subdomainPage(db, { contains: 'one', limit: 2, offset: 2 })).records.map((r) => r.name)).toEqual(['echo-one']);
    expect((await subdomainPage(db, { limit: 100, offset: 0 })).total).toBe(5);
    expect(await subdomainPage(db, { contains: 'zzz', limit: 100, offset: 0 })).toEqual({ total: 0, records: [] });

    const a = ids.get('alpha-one')!;
    const b = ids.get('bravo-two')!;
    const decision = (route: 'server' | 'direct', direct: string | null) => ({ route, direct, reason: `r-${route}`, streak: 1 });
    await recordProbeRun(db, NOW - 120, [{ subdomainId: a, family: 4, address: '203.0.113.2', ok: false, route: 'server', detail: { reason: 'old' }, decision: decision('server', null) }]);
    await recordProbeRun(db, NOW - 60, [
      { subdomainId: a, family: 4, address: '203.0.113.2', ok: true, route: 'direct', detail: { reason: 'every port', ports: [] }, decision: decision('direct', '203.0.113.2') },
      { subdomainId: a, family: 6, address: '2001:db8::1', ok: false, route: 'server', detail: { reason: 'v6 closed' }, decision: decision('server', null) },
    ]);
    const probes = await latestProbes(db, [a, b]);
    expect(probes.get(a)).toEqual({
      4: { at: NOW - 60, address: '203.0.113.2', ok: true, route: 'direct', reason: 'every port' },
      6: { at: NOW - 60, address: '2001:db8::1', ok: false, route: 'server', reason: 'v6 closed' },
    });
    expect(probes.has(b)).toBe(false);

    const cert = (serial: string, id: string, notAfter: number, issuer: 'private' | 'acme' = 'private', notBefore = NOW - 86400) =>
      recordCertificate(db, { serial, subdomainId: id, fqdn: 'x.pipe.test', kind: 'pod', notBefore, notAfter, sha256: serial.toLowerCase(), issuer });
    const at = Math.floor(Date.now() / 1000);
    await cert('A1', a, at + 90 * 86400);
    await cert('A2', a, at + 80 * 86400, 'acme'); // a public one wins over a newer private one
    await cert('A3', a, at + 95 * 86400, 'private', NOW);
    await cert('B1', b, at + 10 * 86400);
    await cert('B0', b, at - 10); // expired: never current
    const current = await currentCertificates(db, [a, b]);
    expect(current.get(a)).toMatchObject({ serial: 'A2', issuer: 'acme' });
    expect(current.get(b)).toMatchObject({ serial: 'B1' });
    expect(await soonestCertificateExpiry(db)).toMatchObject({ name: 'bravo-two', serial: 'B1' });
    expect(await fleetCounts(db)).toEqual({ pods: 5, active: 5, direct4: 1, direct6: 0, withIpv6: 0 });
  });
});
