/**
 * The operator's status page (issue "See the fleet"), seen the way an operator sees it: Debian's Chromium,
 * headless, driven by playwright-core, on the world's client host, opening https://server.pipe.test/status
 * through nginx (the name resolved by pipe2me's own nameserver, the server's certificate pinned). Refused
 * without an operator's credential and with a wrong one; with it, every pod of the world, a pod that just
 * came online on reload, the per-pod page with its probe history and mappings — JavaScript off as well.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHash, X509Certificate } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { ADDR, curl, helperArgv, podAddress6, waitFor } from '../world/index.js';
import { netnsInodeOfName, pidsInNetns } from '../world/procfs.js';
import { DOMAIN, ROOT } from '../stack/stack.js';
import { useStack } from '../stack/hooks.js';

interface Setup { name: string; fqdn: string; services: { protocol: string; port: number; url: string }[] }
interface Operator { name: string; secret: string; url: string }
interface ShowJson { online: unknown; reported_ipv6: string | null; ipv6_note: string | null; mappings: { family: number; via: string }[] }

const URL_STATUS = `https://server.${DOMAIN}/status`;
const WRONG_SECRET = 'p2mo_' + 'x'.repeat(43);
let web: Setup;
let raw: Setup;
let operator: Operator;
let browser: Browser | undefined;

/** Base64 SHA-256 of each certificate's public key (SPKI): what Chromium's --ignore-certificate-errors-spki-list pins. */
function spkiPins(...files: string[]): string[] {
  const pems = files.flatMap((f) => fs.readFileSync(f, 'utf8').match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []);
  return [...new Set(pems.map((pem) => createHash('sha256').update(new X509Certificate(pem).publicKey.export({ type: 'spki', format: 'der' })).digest('base64')))];
}

/** Chromium processes (not zombies) in a network namespace. */
function chromiumIn(ns: string): number[] {
  const inode = netnsInodeOfName(ns);
  if (inode === undefined) return [];
  return pidsInNetns(new Set([inode])).filter((pid) => {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
      return /chrom/i.test(comm) && state !== 'Z';
    } catch {
      return false;
    }
  });
}

// A dual-stack world (the server has IPv6, the pods' LAN a routed prefix behind IGD2 pinholes), so that
// the page has both families to show: a web pod whose AAAA stays on the server (the router refuses
// pinholes below 1024) and a tcp pod that goes direct over both; and one pod that never came (a claim).
const stack = useStack({ pods: 2, lan6: true, ipv6: true, promptProbe: false }, async (stack) => {
  await stack.startServer();
  operator = (await stack.ctl<Operator>(['operator', 'add', 'alice'])).json;
  const t = (await stack.ctl<{ token: string; ca_pin: string }>(['token', 'create', '--max-ports', '4'])).json;
  const setup = ['setup', '--server', `https://server.${DOMAIN}`, '--token', t.token, '--ca-pin', t.ca_pin];
  web = (await stack.pod<Setup>([...setup, '--protocols', 'http,https', '--ports', '8080,8443'])).json;
  raw = (await stack.pod<Setup>([...setup, '--protocols', 'tcp', '--ports', '9000'], { host: 'pod2' })).json;
  await stack.startPodService('pod');
  await stack.world.start({ name: 'pod2-echo', host: 'pod2', argv: helperArgv('serve.mjs', ['echo', '::', 9000]), ready: (d, p) => p.waitLog(d.name, 'listening').then(() => undefined) });
  await stack.ctl(['add-subdomain', '--ports', 'https', '--name', 'lab-printer']);
  await stack.startPod('pod', ['--igd6', stack.world.igd6Url]);

  // The browser runs on the client host: playwright talks to it over a pipe (fds 3 and 4), which
  // `ip netns exec` hands on as it is; the namespace's resolv.conf points at pipe2me's nameserver.
  const wrapper = stack.world.path('chromium-in-cli');
  fs.writeFileSync(wrapper, `#!/bin/sh\nexec ip netns exec ${stack.world.ns('cli')} /usr/bin/chromium "$@"\n`, { mode: 0o755 });
  const pins = spkiPins(stack.layout.serverCert, stack.caFile());
  browser = await chromium.launch({
    executablePath: wrapper,
    args: ['--no-sandbox', `--ignore-certificate-errors-spki-list=${pins.join(',')}`, '--disable-features=HttpsUpgrades,Translate,MediaRouter', '--no-first-run'],
    timeout: 60_000,
  });
  stack.world.onCleanup('chromium', () => browser?.close());
}, 300_000);

afterAll(async () => {
  await browser?.close();
});

const contexts: BrowserContext[] = [];
async function open(o: { credentials?: { username: string; password: string }; javaScriptEnabled?: boolean } = {}): Promise<Page> {
  const ctx = await browser!.newContext({
    viewport: { width: 1400, height: 800 }, ...(o.credentials ? { httpCredentials: o.credentials } : {}), javaScriptEnabled: o.javaScriptEnabled ?? true,
  });
  contexts.push(ctx);
  return ctx.newPage();
}
const alice = () => ({ username: operator.name, password: operator.secret });
const rowOf = (page: Page, name: string) => page.locator('table.pods tbody tr', { has: page.locator(`a[href="/status/${name}"]`) });

describe('the status page', () => {
  it('refuses without a credential and with a wrong one: 401, a Basic challenge, a short page', async () => {
    // Without a credential: a browser would ask for one; headless Chromium has no dialog and gives up on
    // the navigation (net::ERR_INVALID_AUTH_CREDENTIALS) after the 401 with its challenge came.
    const page = await open();
    const answer = page.waitForResponse((r) => r.url() === URL_STATUS);
    await expect(page.goto(URL_STATUS)).rejects.toThrow(/ERR_INVALID_AUTH_CREDENTIALS/);
    const r = await answer;
    expect(r.status()).toBe(401);
    expect(r.headers()['www-authenticate']).toBe('Basic realm="pipe2me status", charset="UTF-8"');
    // The same for any other client, e.g. curl: the short page says how to get a credential, and nothing else.
    const plain = await curl(stack().world, URL_STATUS, { cacert: stack().caFile() });
    expect(plain.status).toBe(401);
    expect(plain.headers['www-authenticate']).toEqual(['Basic realm="pipe2me status", charset="UTF-8"']);
    expect(plain.body).toContain('pipe2me-ctl operator add NAME');
    expect(plain.body).not.toContain(web.name);

    // With a wrong one the browser tries it, is refused again, and shows the 401's page.
    for (const credentials of [{ username: operator.name, password: WRONG_SECRET }, { username: 'bob', password: operator.secret }]) {
      const p = await open({ credentials });
      const w = await p.goto(URL_STATUS);
      expect(w!.status(), JSON.stringify(credentials.username)).toBe(401);
      expect(await p.locator('h1').textContent()).toBe('Sign in to see the status page');
      expect(await p.content()).not.toContain(web.name);
      const one = await p.goto(`${URL_STATUS}/${web.name}`);
      expect(one!.status()).toBe(401);
    }
    // The operator's secret is for the status page only: it is no pod's secret, and the API says so.
    const api = await curl(stack().world, `https://server.${DOMAIN}/v1/subdomains/${web.name}`, { cacert: stack().caFile(), headers: { authorization: `Bearer ${operator.secret}` } });
    expect(api.status).toBe(401);
  });

  it('with the credential: every pod of the world, the summary, and strict headers; no script anywhere', async () => {
    const page = await open({ credentials: alice() });
    const r = await page.goto(URL_STATUS);
    expect(r!.status()).toBe(200);
    const h = r!.headers();
    expect(h['content-type']).toBe('text/html; charset=utf-8');
    expect(h['content-security-policy']).toMatch(/^default-src 'none'; style-src 'unsafe-inline'; img-src data:/);
    expect(h).toMatchObject({ 'x-content-type-options': 'nosniff', 'cache-control': 'no-store', 'x-frame-options': 'DENY' });
    expect(await page.locator('script').count()).toBe(0);
    expect(await page.locator('table.pods tbody tr').count()).toBe(3);
    const webRow = rowOf(page, web.name);
    expect(await webRow.textContent()).toContain('online');
    expect(await webRow.textContent()).toContain(`from ${ADDR.routerWan} (IPv4)`);
    expect(await webRow.locator('.ports').textContent()).toMatch(/http\s*\d+\s*https\s*\d+/);
    expect(await webRow.textContent()).toMatch(/\d+ days left/);
    expect(await rowOf(page, raw.name).textContent()).toContain('offline');
    const lab = await rowOf(page, 'lab-printer').textContent();
    for (const t of ['claim pending', 'offline', 'not probed yet', 'none yet']) expect(lab).toContain(t);
    const card = (label: string) => page.locator('.card', { has: page.locator('.label', { hasText: new RegExp(`^${label}$`) }) }).locator('.value');
    expect(await card('Pods').textContent()).toBe('3');
    expect(await card('Online').textContent()).toBe('1');
    expect(await page.locator('header.top').textContent()).toContain('signed in as alice');
  });

  it('a pod that just came online appears on reload, online from its router\'s address', async () => {
    const page = await open({ credentials: alice() });
    await page.goto(URL_STATUS);
    expect(await rowOf(page, raw.name).textContent()).toContain('offline');
    await stack().startPod('pod2', ['--igd6', stack().world.igd6Url]);
    await waitFor('pod2 online', async () => (await stack().ctl<ShowJson>(['show', raw.name])).json.online !== null, { timeoutMs: 20_000, intervalMs: 200 });
    await page.reload();
    const row = await rowOf(page, raw.name).textContent();
    expect(row).toContain('online');
    expect(row).toContain(`from ${ADDR.routerWan} (IPv4)`);
    expect(row).toContain('tcp');
  });

  it('the pod\'s own page: its probe history (family, outcome, address, reason) and its mappings with how they were made; it reloads itself', async () => {
    const show = async (s: Setup) => (await stack().ctl<ShowJson>(['show', s.name])).json;
    await waitFor('both pods report their IPv4 mappings and their IPv6 address', async () => {
      const [w, t] = await Promise.all([show(web), show(raw)]);
      return w.mappings.filter((m) => m.family === 4).length === 4 && w.ipv6_note !== null && w.reported_ipv6 === podAddress6(1)
        && t.mappings.filter((m) => m.family === 4).length === 1 && t.mappings.some((m) => m.family === 6 && m.via === 'pinhole') && t.reported_ipv6 === podAddress6(2);
    }, { timeoutMs: 30_000, intervalMs: 300 });
    const probe = (await stack().ctl<{ results: { name: string; family: number; route: string; reason: string }[] }>(['probe'])).json.results;
    const result = (s: Setup, family: number) => probe.find((x) => x.name === s.name && x.family === family)!;
    expect(result(web, 4).route).toBe('direct');
    expect(result(web, 6).route).toBe('server');
    expect(result(raw, 6).route, result(raw, 6).reason).toBe('direct');

    const page = await open({ credentials: alice() });
    const r = await page.goto(`${URL_STATUS}/${web.name}`);
    expect(r!.status()).toBe(200);
    expect(await page.locator('meta[http-equiv="refresh"]').getAttribute('content')).toBe('15');
    expect(await page.locator('h1').textContent()).toContain(web.name);
    const history = page.locator('h2:has-text("Probe history") + table tbody tr');
    expect(await history.count()).toBeGreaterThanOrEqual(2);
    const rows = await Promise.all((await history.all()).map((r) => r.locator('td').allTextContents()));
    const v4 = rows.find((r) => r[1] === 'IPv4')!;
    expect(v4.slice(2)).toEqual(['ok', ADDR.routerWan, 'direct', `every port answers as this pod at ${ADDR.routerWan}`]);
    const v6 = rows.find((r) => r[1] === 'IPv6')!;
    expect(v6.slice(2, 5)).toEqual(['failed', podAddress6(1), 'server']);
    expect(v6[5]).toContain('not every port is open at the pod\'s IPv6 address (missing 80, 443)');
    const openings = await page.locator('h2:has-text("Openings") ~ table').first().locator('tbody tr').allTextContents();
    const esc = (a: string) => a.replace(/[.[\]]/g, '\\$&');
    expect(openings.filter((o) => o.startsWith('IPv4'))).toHaveLength(4);
    for (const o of openings.filter((o) => o.startsWith('IPv4'))) expect(o).toMatch(new RegExp(`^IPv4${esc(ADDR.routerWan)}:\\d+\\d+upnp UPnP IGD port mapping`));
    expect(openings.filter((o) => o.startsWith('IPv6'))).toHaveLength(2); // 20000 and 20001; 80 and 443 refused
    for (const o of openings.filter((o) => o.startsWith('IPv6'))) expect(o).toMatch(new RegExp(`^IPv6${esc(`[${podAddress6(1)}]`)}:\\d+\\d+pinhole IGD2 pinhole`));
    expect(await page.locator('.note').textContent()).toMatch(/The pod says about IPv6: .*80: the router refuses IPv6 pinholes for ports below 1024/);
    expect(await page.locator('.card', { hasText: 'IPv6 (AAAA)' }).textContent()).toContain('server through the tunnel');
    expect(await page.locator('.card', { hasText: 'IPv4 (A)' }).textContent()).toContain(`direct to the router ${ADDR.routerWan}`);
    // What `pipe2me-ctl show --json` has is on the page.
    const shown = (await stack().ctl<{ fqdn: string; key: { fingerprint: string }; certificate: { serial: string; sha256: string }; ports: { url: string }[] }>(['show', web.name])).json;
    const text = (await page.locator('main').textContent())!;
    for (const v of [shown.fqdn, shown.key.fingerprint, shown.certificate.serial, shown.certificate.sha256, ...shown.ports.map((p) => p.url)]) expect(text).toContain(v);
    // The list shows the probe and the direct route too.
    await page.goto(URL_STATUS);
    const row = await rowOf(page, web.name).textContent();
    expect(row).toContain(`direct to the router ${ADDR.routerWan}`);
    expect(row).toMatch(/ok IPv4 (just now|\d+ s ago)/);
    expect(row).toMatch(/failed IPv6 (just now|\d+ s ago) at 2001:db8:77::10/);
    const tcpRow = await rowOf(page, raw.name).textContent();
    expect(tcpRow).toContain(`direct to the pod ${podAddress6(2)}`);
    expect(tcpRow).toMatch(/ok IPv6 (just now|\d+ s ago)/);
    expect((await page.goto(`${URL_STATUS}/no-such-pod`))!.status()).toBe(404);
  });

  it('works with JavaScript off: the list, the search form (a plain GET) and the links', async () => {
    const page = await open({ credentials: alice(), javaScriptEnabled: false });
    await page.goto(URL_STATUS);
    expect(await page.locator('table.pods tbody tr').count()).toBe(3);
    await page.fill('input[name="q"]', raw.name.slice(0, 6));
    await Promise.all([page.waitForURL(/\?q=/), page.click('button[type="submit"]')]);
    expect(new URL(page.url()).searchParams.get('q')).toBe(raw.name.slice(0, 6));
    const listed = await page.locator('td.name > a').allTextContents();
    expect(listed).toContain(raw.name);
    if (!web.name.includes(raw.name.slice(0, 6))) expect(listed).not.toContain(web.name);
    await page.goto(`${URL_STATUS}?q=zzzz`);
    expect(await page.locator('.empty').textContent()).toContain('No pod\'s name contains “zzzz”.');
    await page.goto(URL_STATUS);
    await Promise.all([page.waitForURL(new RegExp(`/status/${web.name}$`)), page.click(`a[href="/status/${web.name}"]`)]);
    expect(await page.locator('h2:has-text("Probe history") + table tbody tr').count()).toBeGreaterThanOrEqual(1);
  });

  it('a screenshot of the page for the README', async () => {
    const page = await open({ credentials: alice() });
    await page.goto(URL_STATUS);
    const file = stack().world.scratchPath('status-page') + '.png';
    await page.screenshot({ path: file, fullPage: true });
    expect(fs.statSync(file).size).toBeGreaterThan(10_000);
    await page.goto(`${URL_STATUS}/${web.name}`);
    await page.screenshot({ path: stack().world.scratchPath('status-pod') + '.png', fullPage: true });
    if (process.env.UPDATE_SCREENSHOT === '1') fs.copyFileSync(file, path.join(ROOT, 'docs', 'status-page.png'));
    console.log(`status page screenshot: ${file}`);
  });

  it('wrong credentials are limited per source address: past the limit even the right one waits, other addresses do not', async () => {
    const url = `http://127.0.0.1:${stack().config.http.apiPort}/status`;
    const get = (secret: string) => curl(stack().world, url, { from: 'srv', extraArgs: ['-u', `alice:${secret}`] });
    const codes: number[] = [];
    for (let i = 0; i < 11; i++) codes.push((await get(WRONG_SECRET)).status);
    expect(codes.slice(0, 10)).toEqual(Array(10).fill(401));
    expect(codes[10]).toBe(429);
    const refused = await get(operator.secret);
    expect(refused.status).toBe(429);
    expect(Number(refused.headers['retry-after']?.[0])).toBeGreaterThan(0);
    // The browser comes from another address (the client's, through nginx): it is not affected.
    const page = await open({ credentials: alice() });
    expect((await page.goto(URL_STATUS))!.status()).toBe(200);
  });

  it('operators on the CLI: a bad name is refused clearly; list shows the last sign-in; a removed operator is refused at once', async () => {
    const bad = await stack().ctl(['operator', 'add', 'Bad_Name'], { allowFailure: true, json: false });
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toContain('"Bad_Name" is not a valid operator name');
    expect(bad.stderr).toContain('lower-case letters, digits and hyphens');
    const again = await stack().ctl(['operator', 'add', 'alice'], { allowFailure: true });
    expect(again.exitCode).toBe(5);
    const list = (await stack().ctl<{ name: string; last_used: string | null }[]>(['operator', 'list'])).json;
    expect(list).toEqual([expect.objectContaining({ name: 'alice', last_used: expect.stringMatching(/^\d{4}-/) })]);
    const human = await stack().ctl(['operator', 'add', 'bob'], { json: false });
    expect(human.stdout).toMatch(/secret \(shown once; only its hash is kept\): p2mo_[A-Za-z0-9_-]{43}/);
    expect(human.stdout).toContain(`https://server.${DOMAIN}/status`);
    await stack().ctl(['operator', 'remove', 'alice']);
    const page = await open({ credentials: alice() });
    expect((await page.goto(URL_STATUS))!.status()).toBe(401);
    expect((await stack().ctl(['operator', 'remove', 'alice'], { allowFailure: true })).exitCode).toBe(4);
  });

  it('the browser leaves no process behind', async () => {
    for (const c of contexts) await c.close();
    await browser!.close();
    browser = undefined;
    await waitFor('no chromium left', async () => chromiumIn(stack().world.ns('cli')).length === 0, { timeoutMs: 10_000, intervalMs: 200 });
  });
});
