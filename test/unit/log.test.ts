import { describe, expect, it } from 'vitest';
import { createLog, formatEvent, redact } from '../../src/util/log.js';

const at = new Date('2026-12-01T12:00:00.000Z');

describe('event lines', () => {
  it('text: one line with the time, the process and the sentence', () => {
    expect(formatEvent('text', 'api', at, 'created alpha.pipe.test', { event: 'subdomain_created', subdomain: 'alpha' })).toBe('2026-12-01T12:00:00.000Z api: created alpha.pipe.test\n');
  });

  it('json: one object per line with the event, the subdomain and the outcome as fields', () => {
    const line = formatEvent('json', 'probe', at, 'alpha: IPv6 direct', { event: 'route_changed', subdomain: 'alpha', outcome: 'direct', family: 'ipv6' });
    expect(line.endsWith('\n')).toBe(true);
    expect(line.trim().split('\n')).toHaveLength(1);
    expect(JSON.parse(line)).toEqual({ ts: '2026-12-01T12:00:00.000Z', process: 'probe', event: 'route_changed', message: 'alpha: IPv6 direct', subdomain: 'alpha', outcome: 'direct', family: 'ipv6' });
    // A message with newlines stays one line in JSON.
    expect(formatEvent('json', 'api', at, 'a\nb').trim().split('\n')).toHaveLength(1);
  });

  it('never writes a secret, in the sentence or in a field', () => {
    const secret = `p2ms_${'A'.repeat(43)}`;
    const lines: string[] = [];
    const log = createLog('api', 'json', (l) => lines.push(l));
    log(`refused ${secret}`, { event: 'x', nested: { token: `p2mt_${'b'.repeat(43)}` }, list: [`p2mo_${'c'.repeat(43)}`] });
    createLog('api', 'text', (l) => lines.push(l))(`claim p2mc_${'d'.repeat(43)}`);
    expect(lines.join('')).not.toMatch(/p2m[tcso]_[A-Za-z0-9_-]{20}/);
    expect(redact(secret)).toBe('p2ms_…(redacted)');
  });
});
