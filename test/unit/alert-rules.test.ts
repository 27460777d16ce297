/**
 * The shipped alert rules (config/pipe2me.rules.yml), with Debian's promtool: `promtool check rules`
 * accepts them, and `promtool test rules` runs test/prometheus/pipe2me.rules.test.yml, where every alert
 * fires when its condition holds and not otherwise. The unit tests bite: a copy with one threshold moved
 * fails them. And what promtool cannot know: every metric a rule uses is in the catalogue, every alert has
 * a severity, a summary, a description and a runbook_url whose anchor is a heading of docs/operations.md,
 * and the certificate alerts fire without `for`.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import yaml from 'js-yaml';
import { afterAll, describe, expect, it } from 'vitest';
import { API_METRICS, SCRAPE_METRICS, STORE_METRICS } from '../../src/metrics/catalogue.js';

const ROOT = path.join(import.meta.dirname, '..', '..');
const RULES = path.join(ROOT, 'config', 'pipe2me.rules.yml');
const TESTS = path.join(ROOT, 'test', 'prometheus', 'pipe2me.rules.test.yml');
const DOCS = path.join(ROOT, 'docs', 'operations.md');
const PROMTOOL = '/usr/bin/promtool';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'p2m-alert-rules-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function promtool(args: string[]) {
  const r = spawnSync(PROMTOOL, args, { encoding: 'utf8', timeout: 30_000 });
  if (r.error) throw r.error;
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

interface Rule { alert?: string; record?: string; expr: string; for?: string; labels?: Record<string, string>; annotations?: Record<string, string> }
const rules = (yaml.load(fs.readFileSync(RULES, 'utf8')) as { groups: { name: string; rules: Rule[] }[] });
const alerts = rules.groups.flatMap((g) => g.rules).filter((r): r is Rule & { alert: string } => typeof r.alert === 'string');

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens. */
const slug = (heading: string) => heading.trim().toLowerCase().replace(/[^\p{L}\p{N} _-]/gu, '').replace(/ /g, '-');

/** The rules and their tests copied to a scratch tree (the test file names the rules by a relative path). */
function scratchCopy(name: string, edit: (rules: string) => string): string {
  const dir = path.join(tmp, name);
  fs.mkdirSync(path.join(dir, 'config'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'test', 'prometheus'), { recursive: true });
  const text = fs.readFileSync(RULES, 'utf8');
  const edited = edit(text);
  expect(edited).not.toBe(text);
  fs.writeFileSync(path.join(dir, 'config', 'pipe2me.rules.yml'), edited);
  fs.copyFileSync(TESTS, path.join(dir, 'test', 'prometheus', 'pipe2me.rules.test.yml'));
  return path.join(dir, 'test', 'prometheus', 'pipe2me.rules.test.yml');
}

describe('config/pipe2me.rules.yml', () => {
  it('promtool check rules accepts it', () => {
    const r = promtool(['check', 'rules', RULES]);
    expect(r.code, r.out).toBe(0);
    expect(r.out).toContain(`SUCCESS: ${alerts.length} rules found`);
  });

  it('promtool test rules: every alert fires when it should and not when it should not', () => {
    const r = promtool(['test', 'rules', TESTS]);
    expect(r.code, r.out).toBe(0);
    expect(r.out).toContain('SUCCESS');
  });

  it('the unit tests cover every alert, each both firing and silent', () => {
    const doc = yaml.load(fs.readFileSync(TESTS, 'utf8')) as { tests: { alert_rule_test?: { alertname: string; exp_alerts?: { exp_labels: Record<string, string> }[] }[] }[] };
    const cases = doc.tests.flatMap((t) => t.alert_rule_test ?? []);
    for (const a of alerts) {
      const mine = cases.filter((c) => c.alertname === a.alert);
      expect(mine.some((c) => (c.exp_alerts ?? []).some((e) => e.exp_labels.severity === a.labels?.severity)), `${a.alert} (${a.labels?.severity}) fires in a test`).toBe(true);
      expect(mine.some((c) => !(c.exp_alerts ?? []).some((e) => e.exp_labels.severity === a.labels?.severity)), `${a.alert} (${a.labels?.severity}) stays silent in a test`).toBe(true);
    }
  });

  it('the unit tests fail when a threshold or a duration moves', () => {
    for (const [name, edit] of [
      ['offline-share', (s: string) => s.replace('pipe2me_pods > 0.2)', 'pipe2me_pods > 0.4)')],
      ['apply-for', (s: string) => s.replace(/(pipe2me_apply_last_run_failed == 1\n\s+for:) 5m/, '$1 4m')],
      ['cert-14d', (s: string) => s.replace('< 14 * 86400', '< 13 * 86400')],
    ] as const) {
      const r = promtool(['test', 'rules', scratchCopy(name, edit)]);
      expect(r.code, `${name}: ${r.out}`).toBe(1);
      expect(r.out).toContain('FAILED');
    }
  });

  it('uses only metrics of the catalogue (and up)', () => {
    const known = new Set([...Object.keys(STORE_METRICS), ...Object.keys(SCRAPE_METRICS), ...Object.keys(API_METRICS)]);
    const used = new Set(alerts.flatMap((a) => a.expr.match(/\bpipe2me_[a-z0-9_]+/g) ?? []));
    expect(used.size).toBeGreaterThan(10);
    for (const m of used) expect(known.has(m), m).toBe(true);
    for (const a of alerts) for (const job of a.expr.match(/\bup\{[^}]*\}/g) ?? []) expect(job).toBe('up{job="pipe2me"}');
  });

  it('every alert has a severity, a summary, a description and a runbook in docs/operations.md', () => {
    const anchors = new Set(fs.readFileSync(DOCS, 'utf8').split('\n').filter((l) => /^#{2,4} /.test(l)).map((l) => slug(l.replace(/^#+ /, ''))));
    expect(rules.groups.map((g) => g.name)).toEqual(['pipe2me']);
    for (const a of alerts) {
      expect(['warning', 'critical'], a.alert).toContain(a.labels?.severity);
      expect(a.annotations?.summary, a.alert).toBeTruthy();
      expect(a.annotations?.description, a.alert).toBeTruthy();
      const m = /^file:\/\/\/opt\/pipe2me\/docs\/operations\.md#([a-z0-9-]+)$/.exec(a.annotations?.runbook_url ?? '');
      expect(m, `${a.alert}: ${a.annotations?.runbook_url}`).not.toBeNull();
      expect(m![1], a.alert).toBe(slug(a.alert));
      expect(anchors.has(m![1]!), `docs/operations.md has a heading for #${m![1]}`).toBe(true);
    }
  });

  it('the certificate alerts have no `for`: an expiry is a fact, not a flap', () => {
    const certs = alerts.filter((a) => a.alert === 'Pipe2meCertificateExpiring');
    expect(certs.map((a) => a.labels?.severity).sort()).toEqual(['critical', 'warning']);
    for (const a of certs) expect(a.for).toBeUndefined();
  });
});
