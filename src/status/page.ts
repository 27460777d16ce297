/**
 * The operator's status page, rendered on the server as plain HTML: no script at all, styles inline, a
 * GET form for the search and links for paging, so that it works in any browser (JavaScript off too)
 * and under a CSP that allows nothing else. Pure: data in, a string out.
 *
 * Every value goes through one helper, `html`, a tagged template that escapes whatever it is given
 * unless it is already HTML that `html` made: a hostile pod name, note or probe reason cannot add markup.
 */
import type { SubdomainSummary, SubdomainView } from '../server/subdomains.js';
import type { CurrentCertificate, FleetCounts, LatestProbe } from '../state/status-page.js';

/** The response headers of every status page answer (the 401 and errors too). */
export const PAGE_HEADERS: Readonly<Record<string, string>> = {
  'content-type': 'text/html; charset=utf-8',
  'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'cache-control': 'no-store',
  'referrer-policy': 'no-referrer',
};

export const REALM = 'Basic realm="pipe2me status", charset="UTF-8"';

export const PER_PAGE = 100;

// ------------------------------------------------------------------------------------------ escaping

/** Markup that `html` made (or that is known to be markup): inserted as it is. */
export class Html {
  constructor(readonly value: string) {}
  toString(): string {
    return this.value;
  }
}

const ENTITIES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Text for HTML (element content and quoted attributes); control characters are shown as \xNN. */
export function escapeHtml(value: unknown): string {
  return String(value)
    .replace(/[&<>"']/g, (c) => ENTITIES[c]!)
    // eslint-disable-next-line no-control-regex
    .replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

function fragment(v: unknown): string {
  if (v instanceof Html) return v.value;
  if (Array.isArray(v)) return v.map(fragment).join('');
  if (v === null || v === undefined || v === false) return '';
  return escapeHtml(v);
}

/** The one way markup is made here: every interpolated value is escaped unless it is Html already. */
export function html(strings: TemplateStringsArray, ...values: unknown[]): Html {
  let out = strings[0]!;
  values.forEach((v, i) => (out += fragment(v) + strings[i + 1]!));
  return new Html(out);
}

// ----------------------------------------------------------------------------------------- the models

export interface FleetSummary extends FleetCounts {
  online: number;
  soonest: (CurrentCertificate & { name: string }) | null;
  /** When it was counted (unix seconds): the server counts the whole fleet at most every few seconds. */
  countedAt: number;
}

/** One pod in the list: what `pipe2me-ctl list --json` shows, its latest probes and its current certificate. */
export interface PodRow extends SubdomainSummary {
  probes: { 4?: LatestProbe; 6?: LatestProbe };
  certificate: CurrentCertificate | null;
}

export interface Frame {
  /** Unix seconds: "5 min ago" and "12 days left" are counted from here. */
  now: number;
  /** The server's own name. */
  server: string;
  /** Whether the server has an IPv6 address (else a pod not direct over IPv6 has no AAAA at all). */
  serverIpv6: boolean;
  operator: string;
}

export interface ListModel extends Frame {
  summary: FleetSummary;
  rows: PodRow[];
  /** The search as typed (already trimmed). */
  q: string;
  page: number;
  perPage: number;
  /** How many pods match the search (all of them without one). */
  matching: number;
}

export interface PodModel extends Frame {
  view: SubdomainView;
}

// ------------------------------------------------------------------------------------------- helpers

const num = (n: number) => n.toLocaleString('en-US');
const pct = (part: number, whole: number) => (whole === 0 ? '–' : `${Math.round((part / whole) * 100)} %`);
const seconds = (iso: string) => Math.floor(Date.parse(iso) / 1000);
const isoOf = (s: number) => new Date(s * 1000).toISOString().replace('.000Z', 'Z');

function ago(at: number, now: number): string {
  const d = Math.max(0, now - at);
  if (d < 5) return 'just now';
  if (d < 90) return `${d} s ago`;
  if (d < 90 * 60) return `${Math.round(d / 60)} min ago`;
  if (d < 36 * 3600) return `${Math.round(d / 3600)} h ago`;
  return `${Math.round(d / 86400)} d ago`;
}

function duration(d: number): string {
  if (d < 90) return `${d} s`;
  if (d < 90 * 60) return `${Math.round(d / 60)} min`;
  if (d < 36 * 3600) return `${Math.round(d / 3600)} h`;
  return `${Math.round(d / 86400)} d`;
}

const when = (at: number, now: number) => html`<time datetime="${isoOf(at)}" title="${isoOf(at)}">${ago(at, now)}</time>`;

/** Long reasons (a probe's, per port) are cut in the list; the whole text is in the title and on the pod's page. */
function clip(text: string, max = 110): Html {
  return text.length <= max ? html`${text}` : html`<span title="${text}">${text.slice(0, max - 1)}…</span>`;
}

const podHref = (name: string) => `/status/${encodeURIComponent(name)}`;

function listHref(q: string, page: number): string {
  const p = new URLSearchParams();
  if (q) p.set('q', q);
  if (page > 1) p.set('page', String(page));
  const s = p.toString();
  return s ? `/status?${s}` : '/status';
}

const badge = (kind: 'ok' | 'warn' | 'bad' | 'info' | 'muted', text: string) => html`<span class="badge ${kind}">${text}</span>`;
const mono = (text: unknown) => html`<span class="mono">${text}</span>`;
const family = (f: 4 | 6) => `IPv${f}`;

function daysBadge(notAfter: number, now: number): Html {
  const days = Math.floor((notAfter - now) / 86400);
  return badge(days < 8 ? 'bad' : days < 30 ? 'warn' : 'ok', days < 1 ? 'expires today' : days === 1 ? '1 day left' : `${days} days left`);
}

function certificateCell(c: { issuer: string | null; notAfter: number } | null, now: number): Html {
  if (!c) return html`${badge('warn', 'none yet')}`;
  return html`${daysBadge(c.notAfter, now)}<div class="sub">${c.issuer === 'acme' ? 'public (ACME)' : 'private CA'} · until <time datetime="${isoOf(c.notAfter)}">${isoOf(c.notAfter).slice(0, 10)}</time></div>`;
}

function onlineCell(o: SubdomainSummary['online'], now: number): Html {
  if (!o) return html`<span class="dot off"></span>offline`;
  const since = seconds(o.since);
  return html`<span class="dot on"></span><strong>online</strong> <span class="sub-inline">for ${duration(Math.max(0, now - since))}</span><div class="sub">since <time datetime="${o.since}" title="${o.since}">${o.since.slice(11, 19)}</time> from ${mono(o.from)} (${family(o.family)})</div>`;
}

function route4(s: SubdomainSummary, withReason: boolean, max?: number): Html {
  const head = s.route === 'direct'
    ? html`${badge('ok', 'direct')} to the router ${mono(s.direct_ipv4)}`
    : html`${badge('info', 'server')} through the tunnel`;
  return html`${head}${withReason && s.route_reason ? html`<div class="sub">${max ? clip(s.route_reason, max) : s.route_reason}</div>` : ''}`;
}

function route6(s: SubdomainSummary, serverIpv6: boolean, withReason: boolean, max?: number): Html {
  let head: Html;
  if (s.route6 === 'direct') head = html`${badge('ok', 'direct')} to the pod ${mono(s.direct_ipv6)}`;
  else if (serverIpv6) head = html`${badge('info', 'server')} through the tunnel`;
  else head = html`${badge('muted', 'no AAAA')} <span class="sub-inline">the server has no IPv6</span>`;
  const reported = s.reported_ipv6 && s.reported_ipv6 !== s.direct_ipv6 ? html`<div class="sub">the pod reports ${mono(s.reported_ipv6)}</div>` : '';
  return html`${head}${reported}${withReason && s.route6_reason ? html`<div class="sub">${max ? clip(s.route6_reason, max) : s.route6_reason}</div>` : ''}`;
}

function probeLine(f: 4 | 6, p: LatestProbe | undefined, now: number): Html | '' {
  if (!p) return '';
  return html`<div class="probe">${badge(p.ok ? 'ok' : 'bad', p.ok ? 'ok' : 'failed')} ${family(f)} ${when(p.at, now)}${p.address ? html` at ${mono(p.address)}` : ''}${p.ok ? '' : html`<div class="sub">${clip(p.reason, 90)}</div>`}</div>`;
}

const ports = (list: SubdomainSummary['ports']) => html`<div class="ports">${list.map((p) => html`<span class="port"><span class="proto">${p.protocol}</span> ${p.port}</span>`)}</div>`;

// ---------------------------------------------------------------------------------------------- pages

const CSS = `
:root { color-scheme: light; --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --bg: #f6f8fa; --card: #fff;
  --ok: #1a7f37; --ok-bg: #dafbe1; --warn: #9a6700; --warn-bg: #fff8c5; --bad: #cf222e; --bad-bg: #ffebe9;
  --info: #0550ae; --info-bg: #ddf4ff; --mono: ui-monospace, "DejaVu Sans Mono", "SFMono-Regular", Menlo, Consolas, monospace; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; color: var(--fg); background: var(--bg); }
a { color: var(--info); text-decoration: none; } a:hover { text-decoration: underline; }
header.top { display: flex; justify-content: space-between; align-items: baseline; gap: 1em; flex-wrap: wrap; padding: 10px 24px; background: #24292f; color: #f0f3f6; }
header.top a { color: #fff; font-weight: 700; font-size: 16px; } header.top .where { color: #c9d1d9; margin-left: .6em; }
header.top .who { color: #9ea7b3; font-size: 12.5px; }
main { padding: 18px 24px 32px; max-width: 1500px; }
h1 { font-size: 22px; margin: 4px 0 2px; display: flex; align-items: center; gap: .5em; flex-wrap: wrap; }
h2 { font-size: 15px; margin: 26px 0 8px; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(190px, 1fr)); gap: 12px; margin: 4px 0 18px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; }
.card .label { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.card .value { font-size: 24px; font-weight: 650; margin-top: 2px; }
.card .value.small { font-size: 14.5px; font-weight: 500; margin-top: 4px; }
.card .sub { margin-top: 2px; }
.cards.pod { margin-top: 14px; }
.counted { color: var(--muted); font-size: 12px; margin: -10px 0 14px; }
form.search { display: flex; gap: 8px; align-items: center; margin: 0 0 10px; flex-wrap: wrap; }
form.search label { color: var(--muted); }
form.search input { font: inherit; padding: 5px 9px; border: 1px solid var(--line); border-radius: 6px; width: 260px; background: #fff; }
form.search button { font: inherit; padding: 5px 14px; border: 1px solid #1f883d; border-radius: 6px; background: #1f883d; color: #fff; font-weight: 600; }
.count { color: var(--muted); margin-left: auto; }
table { border-collapse: collapse; width: 100%; background: var(--card); border: 1px solid var(--line); border-radius: 8px; overflow: hidden; }
th, td { text-align: left; vertical-align: top; padding: 8px 10px; border-bottom: 1px solid #eaeef2; }
th { background: #f0f3f6; font-size: 12px; color: var(--muted); text-transform: uppercase; letter-spacing: .04em; white-space: nowrap; }
tbody tr:nth-child(even) td { background: #fbfcfd; }
tbody tr:last-child td { border-bottom: 0; }
tr.expired td { color: var(--muted); }
td.name a { font-weight: 650; } td.name .sub { font-family: var(--mono); font-size: 12px; white-space: nowrap; }
.mono, code { font-family: var(--mono); font-size: 12.5px; }
.sub { color: var(--muted); font-size: 12.5px; margin-top: 2px; overflow-wrap: anywhere; }
.sub-inline { color: var(--muted); font-size: 12.5px; }
.badge { display: inline-block; padding: 0 8px; border-radius: 10px; font-size: 12px; font-weight: 600; line-height: 20px; white-space: nowrap; }
.badge.ok { color: var(--ok); background: var(--ok-bg); } .badge.warn { color: var(--warn); background: var(--warn-bg); }
.badge.bad { color: var(--bad); background: var(--bad-bg); } .badge.info { color: var(--info); background: var(--info-bg); }
.badge.muted { color: var(--muted); background: #eaeef2; }
.dot { display: inline-block; width: 9px; height: 9px; border-radius: 50%; margin-right: 6px; vertical-align: 0; }
.dot.on { background: #2da44e; box-shadow: 0 0 0 3px #2da44e33; } .dot.off { background: #afb8c1; }
.probe + .probe { margin-top: 4px; }
.ports { display: flex; flex-wrap: wrap; gap: 4px; }
.port { font-family: var(--mono); font-size: 12px; border: 1px solid var(--line); border-radius: 5px; padding: 0 6px; background: #f6f8fa; white-space: nowrap; }
.port .proto { color: var(--muted); }
nav.pager { display: flex; gap: 14px; align-items: center; justify-content: center; margin: 14px 0; }
nav.pager .off { color: #afb8c1; }
.empty { background: var(--card); border: 1px dashed var(--line); border-radius: 8px; padding: 28px; text-align: center; color: var(--muted); }
table.kv { width: auto; min-width: 50%; } table.kv th { width: 190px; text-transform: none; letter-spacing: 0; font-size: 13px; background: #f6f8fa; }
.back { font-size: 13px; }
.note { background: var(--warn-bg); border: 1px solid #eed888; border-radius: 6px; padding: 6px 10px; margin: 8px 0; }
footer { color: var(--muted); font-size: 12px; margin-top: 22px; }
`;

function shell(title: string, f: Frame, body: Html, opts: { refresh?: number } = {}): string {
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
${opts.refresh ? html`<meta http-equiv="refresh" content="${opts.refresh}">\n` : ''}<meta name="robots" content="noindex">
<link rel="icon" href="data:,">
<title>${title}</title>
<style>${new Html(CSS)}</style>
</head>
<body>
<header class="top"><div><a href="/status">pipe2me</a><span class="where">${f.server}</span></div><div class="who">signed in as ${f.operator} · ${isoOf(f.now).replace('T', ' ').replace('Z', ' UTC')}</div></header>
<main>
${body}
</main>
</body>
</html>
`.value;
}

function summaryCards(s: FleetSummary, now: number): Html {
  const soonest = s.soonest
    ? html`<div class="value small">${certificateCell(s.soonest, now)}</div><div class="sub"><a href="${podHref(s.soonest.name)}">${s.soonest.name}</a></div>`
    : html`<div class="value small">–</div><div class="sub">no certificate issued yet</div>`;
  return html`<section class="cards">
<div class="card"><div class="label">Pods</div><div class="value">${num(s.active)}</div><div class="sub">active${s.pods > s.active ? html` · ${num(s.pods - s.active)} expired` : ''}</div></div>
<div class="card"><div class="label">Online</div><div class="value">${num(s.online)}</div><div class="sub">${pct(s.online, s.active)} of the active pods</div></div>
<div class="card"><div class="label">Direct IPv4 (A)</div><div class="value">${num(s.direct4)}</div><div class="sub">${pct(s.direct4, s.active)} go straight to their router</div></div>
<div class="card"><div class="label">Direct IPv6 (AAAA)</div><div class="value">${num(s.direct6)}</div><div class="sub">${pct(s.direct6, s.active)} · ${num(s.withIpv6)} report an IPv6 address</div></div>
<div class="card"><div class="label">Soonest certificate expiry</div>${soonest}</div>
</section>${now - s.countedAt >= 5 ? html`\n<div class="counted">summary counted ${ago(s.countedAt, now)}</div>` : ''}`;
}

function pager(m: ListModel, pages: number): Html {
  if (pages <= 1) return html``;
  const link = (page: number, text: string) => (page >= 1 && page <= pages && page !== m.page ? html`<a href="${listHref(m.q, page)}">${text}</a>` : html`<span class="off">${text}</span>`);
  return html`<nav class="pager">${link(1, '« first')}${link(m.page - 1, '‹ previous')}<span>page ${num(m.page)} of ${num(pages)}</span>${link(m.page + 1, 'next ›')}${link(pages, 'last »')}</nav>`;
}

function podRow(r: PodRow, f: Frame): Html {
  const flags = [
    r.status === 'expired' ? badge('muted', 'expired') : '',
    r.claim_pending ? badge('warn', 'claim pending') : '',
    !r.key && r.status === 'active' ? badge('warn', 'no key yet') : '',
  ].filter(Boolean);
  const probes = [probeLine(4, r.probes[4], f.now), probeLine(6, r.probes[6], f.now)].filter(Boolean);
  return html`<tr${r.status === 'expired' ? html` class="expired"` : ''}>
<td class="name"><a href="${podHref(r.name)}">${r.name}</a>${flags.length ? html` ${flags}` : ''}<div class="sub">${r.fqdn}</div></td>
<td>${onlineCell(r.online, f.now)}</td>
<td>${route4(r, true, 90)}</td>
<td>${route6(r, f.serverIpv6, true, 90)}</td>
<td>${probes.length ? probes : html`<span class="sub-inline">not probed yet</span>`}</td>
<td>${certificateCell(r.certificate, f.now)}</td>
<td>${ports(r.ports)}</td>
</tr>`;
}

/** The list: a summary of the fleet, the search, one page of pods. */
export function renderList(m: ListModel): string {
  const pages = Math.max(1, Math.ceil(m.matching / m.perPage));
  const first = (m.page - 1) * m.perPage + 1;
  const last = first + m.rows.length - 1;
  let content: Html;
  if (m.summary.pods === 0) {
    content = html`<div class="empty"><strong>No pods yet.</strong><br>Give a pod a token (<code>pipe2me-ctl token create</code>) or add one (<code>pipe2me-ctl add-subdomain --ports http,https</code>).</div>`;
  } else if (m.rows.length === 0) {
    content = m.q
      ? html`<div class="empty">No pod's name contains “${m.q}”. <a href="/status">Show every pod</a></div>`
      : html`<div class="empty">There is no page ${num(m.page)}. <a href="/status">Back to the first page</a></div>`;
  } else {
    content = html`<table class="pods">
<thead><tr><th>Pod</th><th>Online</th><th>IPv4 (A)</th><th>IPv6 (AAAA)</th><th>Last probe</th><th>Certificate</th><th>Ports</th></tr></thead>
<tbody>
${m.rows.map((r) => html`${podRow(r, m)}\n`)}</tbody>
</table>
${pager(m, pages)}`;
  }
  const count = m.matching === 0 ? '' : m.rows.length === 0 ? `${num(m.matching)} ${m.matching === 1 ? 'pod' : 'pods'}` : `${num(first)}–${num(last)} of ${num(m.matching)} ${m.matching === 1 ? 'pod' : 'pods'}${m.q ? ' matching' : ''}`;
  const body = html`${summaryCards(m.summary, m.now)}
<form class="search" method="get" action="/status">
<label for="q">Name contains</label><input id="q" name="q" type="search" value="${m.q}" maxlength="63" placeholder="e.g. otter" autocomplete="off">
<button type="submit">Search</button>${m.q ? html` <a href="/status">clear</a>` : ''}
<span class="count">${count}</span>
</form>
${content}
<footer>Times are UTC. Routes: A and AAAA are decided each on its own by the server's probe; “server” means clients reach the pod through its tunnel.</footer>`;
  return shell(m.q ? `pipe2me status: “${m.q}”` : `pipe2me status: ${m.server}`, m, body);
}

const VIA: Record<string, string> = { upnp: 'UPnP IGD port mapping', natpmp: 'NAT-PMP port mapping', pinhole: 'IGD2 pinhole', open: 'open (nothing filters)' };

const kvRow = (label: string, value: unknown) => html`<tr><th>${label}</th><td>${value === null || value === undefined || value === '' ? html`<span class="sub-inline">–</span>` : value}</td></tr>`;

/** One pod: everything `pipe2me-ctl show NAME --json` has, and it refreshes itself every 15 s. */
export function renderPod(m: PodModel): string {
  const v = m.view;
  const c = v.certificate;
  const cert = c.serial && c.not_after ? { issuer: c.issuer, notAfter: seconds(c.not_after) } : null;
  const head = html`<div class="back"><a href="/status">← all pods</a></div>
<h1>${v.name} ${v.online ? badge('ok', 'online') : badge('muted', 'offline')} ${v.status === 'active' ? '' : badge('bad', v.status)} ${v.claim_pending ? badge('warn', 'claim pending') : ''}</h1>
<div class="mono">${v.fqdn}</div>
<section class="cards pod">
<div class="card"><div class="label">Online</div><div class="value small">${onlineCell(v.online, m.now)}</div></div>
<div class="card"><div class="label">IPv4 (A)</div><div class="value small">${route4(v, false)}</div></div>
<div class="card"><div class="label">IPv6 (AAAA)</div><div class="value small">${route6(v, m.serverIpv6, false)}</div></div>
<div class="card"><div class="label">Certificate</div><div class="value small">${certificateCell(cert, m.now)}</div></div>
</section>`;

  const details = html`<h2>Details</h2>
<table class="kv"><tbody>
${kvRow('name', mono(v.name))}
${kvRow('fqdn', mono(v.fqdn))}
${kvRow('status', v.status)}
${kvRow('created', mono(v.created))}
${kvRow('expires', v.expires ? mono(v.expires) : 'never')}
${kvRow('online', v.online ? html`since ${mono(v.online.since)} from ${mono(v.online.from)} (${family(v.online.family)})` : 'no live session')}
${kvRow('route IPv4 (A)', html`${route4(v, false)}${v.route_reason ? html`<div class="sub">${v.route_reason}</div>` : ''}`)}
${kvRow('route IPv6 (AAAA)', html`${route6(v, m.serverIpv6, false)}${v.route6_reason ? html`<div class="sub">${v.route6_reason}</div>` : ''}`)}
${kvRow('direct IPv4', v.direct_ipv4 ? mono(v.direct_ipv4) : null)}
${kvRow('direct IPv6', v.direct_ipv6 ? mono(v.direct_ipv6) : null)}
${kvRow('reported IPv6', v.reported_ipv6 ? mono(v.reported_ipv6) : null)}
${kvRow('http entry', v.entry.http ? mono(v.entry.http) : null)}
${kvRow('https entry', v.entry.https ? html`${mono(v.entry.https)}${v.passthrough ? ' (TLS passes through to the pod)' : ''}` : null)}
${kvRow('TLS passthrough', v.passthrough ? 'yes' : 'no')}
${kvRow('pod key', v.key ? html`${v.key.algorithm} ${mono(v.key.fingerprint)}` : badge('warn', 'none registered yet'))}
${kvRow('claim', v.claim_pending ? badge('warn', 'pending: the pod has not claimed it yet') : 'claimed or made by the pod')}
</tbody></table>`;

  const services = html`<h2>Services</h2>
<table><thead><tr><th>Protocol</th><th>Public port</th><th>URL</th></tr></thead><tbody>
${v.ports.length ? v.ports.map((p) => html`<tr><td>${p.protocol}</td><td>${mono(p.port)}</td><td>${mono(p.url)}</td></tr>\n`) : html`<tr><td colspan="3" class="sub">no ports (expired)</td></tr>`}
</tbody></table>`;

  const openings = html`<h2>Openings on the way to the pod</h2>
${v.mapping_note ? html`<div class="note">The pod says about its router mappings: ${v.mapping_note}</div>` : ''}
${v.ipv6_note ? html`<div class="note">The pod says about IPv6: ${v.ipv6_note}</div>` : ''}
<table><thead><tr><th>Family</th><th>Public</th><th>To the pod's port</th><th>Made with</th><th>Lease</th><th>Reported</th></tr></thead><tbody>
${v.mappings.length ? v.mappings.map((x) => html`<tr><td>${family(x.family)}</td><td>${mono(x.external_ip ? (x.family === 6 ? `[${x.external_ip}]:${x.external_port}` : `${x.external_ip}:${x.external_port}`) : `?:${x.external_port}`)}</td><td>${mono(x.internal_port)}</td><td>${badge(x.via === 'open' ? 'muted' : 'info', x.via)} <span class="sub-inline">${VIA[x.via] ?? x.via}</span></td><td>${x.lease_seconds ? duration(x.lease_seconds) : 'permanent'}</td><td>${when(seconds(x.reported), m.now)}</td></tr>\n`) : html`<tr><td colspan="6" class="sub">none reported: the pod has no router mapping and no IPv6 opening</td></tr>`}
</tbody></table>`;

  const probes = html`<h2>Probe history</h2>
<table><thead><tr><th>When</th><th>Family</th><th>Outcome</th><th>Address</th><th>Route after</th><th>Reason</th></tr></thead><tbody>
${v.probes.length ? v.probes.map((p) => html`<tr><td>${when(seconds(p.at), m.now)}<div class="sub mono">${p.at}</div></td><td>${family(p.family)}</td><td>${badge(p.ok ? 'ok' : 'bad', p.ok ? 'ok' : 'failed')}</td><td>${p.address ? mono(p.address) : html`<span class="sub-inline">–</span>`}</td><td>${badge(p.route === 'direct' ? 'ok' : 'info', p.route)}</td><td>${p.reason}</td></tr>\n`) : html`<tr><td colspan="6" class="sub">not probed yet (pipe2me-ctl probe runs every minute from its timer)</td></tr>`}
</tbody></table>`;

  const order = c.order;
  const certificate = html`<h2>Certificate</h2>
<table class="kv"><tbody>
${kvRow('issuer', c.issuer ? (c.issuer === 'acme' ? 'the public ACME CA' : 'the private CA') : badge('warn', 'none issued yet'))}
${kvRow('serial', c.serial ? mono(c.serial) : null)}
${kvRow('valid until', c.not_after && cert ? html`${mono(c.not_after)} ${daysBadge(cert.notAfter, m.now)}` : null)}
${kvRow('sha256', c.sha256 ? mono(c.sha256) : null)}
${kvRow('key sha256', c.key_sha256 ? mono(c.key_sha256) : null)}
${kvRow('ACME order', order ? html`${mono(order.id)} ${badge(order.state === 'failed' ? 'bad' : 'warn', order.state)} attempt ${order.attempts}${order.next_attempt ? html`, next at ${mono(order.next_attempt)}` : ''}${order.last_error ? html`<div class="sub">${order.last_error}</div>` : ''}` : null)}
</tbody></table>`;

  const body = html`${head}${details}${services}${openings}${probes}${certificate}
<footer>This page reloads itself every 15 s. Times are UTC.</footer>`;
  return shell(`${v.name} · pipe2me status`, m, body, { refresh: 15 });
}

/** The answer without (or with a wrong) credential: a 401 with a short page saying how to get one. */
export function renderUnauthorized(): string {
  return html`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>pipe2me status: sign in</title>
<style>body { font: 15px/1.5 system-ui, "DejaVu Sans", sans-serif; margin: 3em auto; max-width: 36em; color: #1f2328; } code { font-family: ui-monospace, "DejaVu Sans Mono", monospace; }</style></head>
<body><h1>Sign in to see the status page</h1>
<p>This page needs an operator's name and secret. On the server: <code>pipe2me-ctl operator add NAME</code> prints a secret once; sign in with the name and that secret.</p></body></html>
`.value;
}

/** A short page for what is not there (a pod's name that does not exist), too many failed sign-ins, or a failure. */
export function renderMessage(title: string, message: string, f?: Frame): string {
  const body = html`<div class="back"><a href="/status">← all pods</a></div><h1>${title}</h1><p>${message}</p>`;
  if (f) return shell(`${title} · pipe2me status`, f, body);
  return html`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>${title}</title></head><body><h1>${title}</h1><p>${message}</p></body></html>
`.value;
}
