/** Human-readable renderings of results, shared by the commands. */
import { stepsMs, type ApplyReport } from '../apply/apply.js';
import type { SubdomainSummary, SubdomainView } from '../server/subdomains.js';

export function applySummary(r: ApplyReport): string {
  const changed = r.plan.changes.filter((c) => c.change !== 'unchanged' || c.modeChanged);
  if (changed.length === 0) return `${r.dryRun ? 'dry run: ' : ''}nothing to change; every rendered file is up to date (${r.durationMs.toFixed(0)} ms).`;
  const lines = [`${r.dryRun ? 'dry run: would change' : 'changed'} ${changed.length} file(s) in ${r.plan.changedUnits.join(', ')} (${r.durationMs.toFixed(0)} ms)`];
  for (const c of changed) lines.push(`  ${c.change === 'unchanged' ? 'mode' : c.change.padEnd(6)} ${c.file.path}`);
  if (r.serial !== null && r.plan.changedUnits.includes('dns')) lines.push(`  zone serial ${r.serial}`);
  for (const rl of r.reloads) {
    lines.push(`  ${rl.status === 'reloaded' ? 'reloaded' : 'not running'}: ${rl.detail}${rl.servedAfterMs !== undefined ? `; serving it after ${rl.servedAfterMs.toFixed(0)} ms` : ''}`);
  }
  for (const d of r.dropped) lines.push(`  left out of the ${d.where}: ${d.owner} ${d.type} ${d.value} (${d.why})`);
  for (const h of r.rendered) if (h.mode === 'whole' && h.why !== 'a full apply') lines.push(`  rendered whole: ${h.path} (${h.why})`);
  if (r.staleConfig) lines.push(`  NOTE: applied with the last good configuration; the file does not validate: ${r.staleConfig.problem.split('\n')[0]}`);
  if (r.dryRun) for (const rl of r.plan.reloads) lines.push(`  would reload: ${rl.action} (${rl.why})`);
  return lines.join('\n');
}

export function applyJson(r: ApplyReport) {
  return {
    dry_run: r.dryRun,
    changed_units: r.plan.changedUnits,
    files: r.plan.changes.map((c) => ({ path: c.file.path, unit: c.file.unit, change: c.change, mode_changed: c.modeChanged })),
    reloads: r.dryRun ? r.plan.reloads.map((x) => ({ ...x, status: 'planned' })) : r.reloads,
    zone_serial: r.serial,
    dropped: r.dropped,
    stale_config: r.staleConfig,
    ...(r.keyIndex ? { key_index: r.keyIndex } : {}),
    rendered: r.rendered,
    duration_ms: Math.round(r.durationMs),
    steps_ms: stepsMs(r),
  };
}

export function subdomainDetails(v: SubdomainView): string {
  const lines = [v.fqdn];
  for (const p of v.ports) lines.push(`  ${p.protocol.padEnd(5)} ${p.url}`);
  if (v.entry.http) lines.push(`  entry ${v.entry.http} -> first ${v.ports.some((p) => p.protocol === 'http') ? 'http' : 'https'} service`);
  if (v.entry.https) lines.push(`  entry ${v.entry.https} -> first https service${v.passthrough ? ' (TLS passes through to the pod)' : ''}`);
  lines.push(`  status ${v.status}, created ${v.created}, expires ${v.expires ?? 'never'}`);
  lines.push(`  route IPv4 (A): ${v.route === 'direct' ? `direct to the pod's router ${v.direct_ipv4}` : 'through this server (tunnel)'}${v.route_reason ? ` — ${v.route_reason}` : ''}`);
  if (v.reported_ipv6 || v.route6 === 'direct' || v.route6_reason) {
    lines.push(`  route IPv6 (AAAA): ${v.route6 === 'direct' ? `direct to the pod's own address ${v.direct_ipv6}` : 'through this server (tunnel)'}${v.route6_reason ? ` — ${v.route6_reason}` : ''}`);
  }
  lines.push(`  pod key: ${v.key ? `${v.key.algorithm} ${v.key.fingerprint}` : 'none registered yet'}`);
  lines.push(`  online: ${v.online ? `since ${v.online.since} from ${v.online.from} (IPv${v.online.family})` : 'no'}`);
  if (v.claim_pending) lines.push('  claim: pending (the pod has not claimed it yet)');
  const v4 = v.mappings.filter((m) => m.family === 4);
  const v6 = v.mappings.filter((m) => m.family === 6);
  if (v4.length) lines.push(`  router mappings: ${v4.map((m) => `${m.external_ip ?? '?'}:${m.external_port}->${m.internal_port} (${m.via === 'natpmp' ? 'NAT-PMP' : 'UPnP'})`).join(', ')}`);
  if (v.mapping_note) lines.push(`  the pod says: ${v.mapping_note}`);
  if (v.reported_ipv6) lines.push(`  IPv6: the pod is at ${v.reported_ipv6}; ${v6.length ? `open ${v6.map((m) => `${m.external_port} (${m.via === 'pinhole' ? 'pinhole' : 'nothing filters'})`).join(', ')}` : 'no port open'}`);
  if (v.ipv6_note) lines.push(`  the pod says about IPv6: ${v.ipv6_note}`);
  const c = v.certificate;
  lines.push(`  certificate: ${c.serial ? `${c.issuer === 'acme' ? 'from the ACME CA' : 'from the private CA'}, serial ${c.serial}, until ${c.not_after}` : 'none yet'}` +
    (c.order ? `; ACME order ${c.order.state} (attempt ${c.order.attempts}${c.order.next_attempt ? `, next at ${c.order.next_attempt}` : ''}${c.order.last_error ? `: ${c.order.last_error}` : ''})` : ''));
  for (const p of v.probes) lines.push(`  probe ${p.at} IPv${p.family} ${p.ok ? 'ok  ' : 'FAIL'} ${p.address ?? '-'} -> ${p.route}: ${p.reason}`);
  return lines.join('\n');
}

export const SUBDOMAIN_COLUMNS = ['NAME', 'PORTS', 'STATUS', 'ROUTE4', 'ROUTE6', 'ONLINE', 'EXPIRES'];
export const NO_SUBDOMAINS = 'No subdomains yet. Add one: pipe2me-ctl add-subdomain --ports http,https';

/** One row of `pipe2me-ctl list`. */
export function subdomainRow(v: SubdomainSummary): string[] {
  return [v.name, v.ports.map((p) => `${p.protocol}:${p.port}`).join(','), v.status, v.route, v.route6, v.online ? 'yes' : 'no', v.expires ?? 'never'];
}

