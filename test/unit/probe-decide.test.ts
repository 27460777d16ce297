import { describe, expect, it } from 'vitest';
import { decide, type RouteState } from '../../src/probe/decide.js';
import { requiredPorts } from '../../src/probe/run.js';
import { sub } from '../helpers/fixtures.js';

const policy = { recoverAfter: 3, flapWindowSeconds: 900 };
const server: RouteState = { route: 'server', direct: null, streak: 0, lastFallbackAt: null };
const good = (address = '198.51.100.7') => ({ ok: true, address, reason: `every port answers as this pod at ${address}` });
const bad = { ok: false, address: '198.51.100.7', reason: 'https 20001: no TLS answer' };

describe('route decision: fail fast, recover slowly', () => {
  it('goes direct on the first good probe of a pod that has not flapped', () => {
    const d = decide(server, good(), policy, 1000);
    expect(d).toMatchObject({ route: 'direct', direct: '198.51.100.7', changed: true, streak: 1, changedAt: 1000 });
  });

  it('falls back to the server on the first failure, and remembers when', () => {
    const direct: RouteState = { route: 'direct', direct: '198.51.100.7', streak: 5, lastFallbackAt: null };
    const d = decide(direct, bad, policy, 2000);
    expect(d).toMatchObject({ route: 'server', direct: null, changed: true, streak: 0, lastFallbackAt: 2000 });
    expect(d.reason).toMatch(/^back to the server: https 20001/);
  });

  it('after a fall-back within the flap window it needs recoverAfter good probes in a row', () => {
    let st: RouteState = { route: 'server', direct: null, streak: 0, lastFallbackAt: 2000 };
    const seen: string[] = [];
    for (const t of [2060, 2120, 2180]) {
      const d = decide(st, good(), policy, t);
      seen.push(d.route);
      st = d;
    }
    expect(seen).toEqual(['server', 'server', 'direct']);
    // A failure in between starts the count again.
    let s2: RouteState = { route: 'server', direct: null, streak: 0, lastFallbackAt: 2000 };
    s2 = decide(s2, good(), policy, 2060);
    s2 = decide(s2, bad, policy, 2120);
    s2 = decide(s2, good(), policy, 2180);
    expect(s2).toMatchObject({ route: 'server', streak: 1 });
  });

  it('outside the flap window one good probe is enough again', () => {
    const st: RouteState = { route: 'server', direct: null, streak: 0, lastFallbackAt: 2000 };
    expect(decide(st, good(), policy, 2000 + 901).route).toBe('direct');
  });

  it('a router that moved is followed only at the address that was verified', () => {
    const direct: RouteState = { route: 'direct', direct: '198.51.100.7', streak: 2, lastFallbackAt: null };
    const d = decide(direct, good('198.51.100.9'), policy, 3000);
    expect(d).toMatchObject({ route: 'direct', direct: '198.51.100.9', changed: true });
    expect(decide(direct, good(), policy, 3000).changed).toBe(false);
  });

  it('no address means no direct route', () => {
    expect(decide(server, { ok: true, address: null, reason: 'x' }, policy, 1).route).toBe('server');
  });
});

describe('ports the direct route needs', () => {
  it('every service port, plus the entries 80 and 443 when there is a web service', () => {
    expect(requiredPorts(sub('a', ['http', 'tcp'], 20000)).map((p) => p.port)).toEqual([20000, 20001, 80, 443]);
    expect(requiredPorts(sub('b', ['tcp'], 20002)).map((p) => p.port)).toEqual([20002]);
  });
});
