/**
 * What keeps one client or one pod from slowing everyone: the API's rate limiter (O(1) per request, a
 * /64 is one source), the probe's hard deadline and bounded text, the prompt prober's bounded queue.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { addressKey, RateLimiter } from '../../src/api/http.js';
import { httpHead, podText } from '../../src/probe/checks.js';
import { PromptProber } from '../../src/server/route.js';
import { formatEvent } from '../../src/util/log.js';
import { publishRefusal } from '../../src/net/address.js';
import { sweepStaleRecords } from '../../src/daemons/sessions.js';

describe('the rate limiter', () => {
  it('limits per key per minute from its first request, and a new window starts afresh', () => {
    const r = new RateLimiter(() => 3);
    const t = 60_000 * 1000 + 5_000;
    for (let i = 0; i < 3; i++) r.check('a', t);
    expect(() => r.check('a', t + 5_000)).toThrow(/Too many requests; try again in 55 s/);
    expect(r.blockedFor('a', t + 5_000)).toBe(55);
    expect(() => r.check('b', t + 5_000)).not.toThrow();
    // Still its window across the limiter's own generations, and free once the minute is over.
    expect(() => r.check('a', t + 59_000)).toThrow();
    expect(() => r.check('a', t + 60_000)).not.toThrow();
    expect(() => r.check('b', t + 200_000)).not.toThrow();
  });

  it('costs the same with a hundred thousand keys (random credentials cannot slow it down)', () => {
    const r = new RateLimiter(() => 60);
    const t = Date.now();
    for (let i = 0; i < RateLimiter.MAX_KEYS + 50_000; i++) r.check(`k${i}`, t);
    const t0 = performance.now();
    for (let i = 0; i < 10_000; i++) r.check(`x${i}`, t);
    // 10,000 checks past the cap: microseconds each, not a scan of the map each (that was ~2 ms a request).
    expect(performance.now() - t0).toBeLessThan(500);
  });

  it('an IPv6 source is its /64, an IPv4 one itself', () => {
    expect(addressKey('2001:db8:1:2:aaaa::1')).toBe('2001:db8:1:2::/64');
    expect(addressKey('2001:db8:1:2:ffff:ffff:ffff:ffff')).toBe('2001:db8:1:2::/64');
    expect(addressKey('2001:db8::1')).toBe('2001:db8:0:0::/64');
    expect(addressKey('::ffff:203.0.113.7')).toBe('203.0.113.7');
    expect(addressKey('203.0.113.7')).toBe('203.0.113.7');
  });
});

describe('the probe against a pod that will not stop talking', () => {
  it('gives up at its deadline even when the endpoint keeps sending (100 Continue every 100 ms)', async () => {
    const srv = net.createServer((sock) => {
      const t = setInterval(() => sock.write('HTTP/1.1 100 Continue\r\n\r\n'), 100);
      sock.on('close', () => clearInterval(t));
      sock.on('error', () => clearInterval(t));
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
    const port = (srv.address() as net.AddressInfo).port;
    const t0 = performance.now();
    await expect(httpHead('127.0.0.1', port, 'x.pipe.test', 500)).rejects.toThrow(/within 500 ms/);
    expect(performance.now() - t0).toBeLessThan(2000);
    srv.close();
  });

  it('keeps what a pod says short and printable', () => {
    expect(podText('x'.repeat(60_000))!.length).toBe(201);
    expect(podText('a\u0000b\u009bc')).toBe('a?b?c');
    expect(podText(undefined)).toBeNull();
  });
});

describe('the prompt prober', () => {
  it('never queues a pod twice, counts the gap from the end of its run, and drops requests past its bound', async () => {
    const runs: string[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const p = new PromptProber(async (n) => {
      runs.push(n);
      if (n === 'slow') await gate;
    }, 5000, 3);
    p.soon('slow', 0);
    await new Promise((r) => setTimeout(r, 20));
    for (let i = 0; i < 50; i++) p.soon('slow', 0); // running: not queued again
    p.soon('a', 0);
    p.soon('b', 0);
    p.soon('c', 0); // past the bound of 3 (slow running, a and b waiting): dropped
    await new Promise((r) => setTimeout(r, 20));
    release();
    await new Promise((r) => setTimeout(r, 50));
    expect(runs).toEqual(['slow', 'a', 'b']);
    p.soon('a', 0); // within 5 s of its last run's end: later, not now
    await new Promise((r) => setTimeout(r, 50));
    expect(runs).toEqual(['slow', 'a', 'b']);
    await p.close();
  });
});

describe('odd input from pods and routers', () => {
  it('a scoped IPv6 address is never published; text logs escape control characters', () => {
    expect(publishRefusal('fe80::1%eth0', 'AAAA', { allowNonGlobal: true })).toMatch(/zone index/);
    expect(publishRefusal('2001:db8::1%1', 'AAAA', { allowNonGlobal: true })).toMatch(/zone index/);
    expect(formatEvent('text', 'pod', new Date(0), 'router says \u001b[2Jhi\nthere')).toBe('1970-01-01T00:00:00.000Z pod: router says \\u001b[2Jhi\\u000athere\n');
  });
});

describe('the stale-record sweep', () => {
  it('removes dead records and gives the event loop back while it goes through many pods', async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'p2m-sweep-'));
    try {
      const sessionsDir = path.join(root, 'sessions');
      const connsDir = path.join(root, 'conns');
      for (let i = 0; i < 3000; i++) {
        // A record of a connection whose monitor is long gone (no such pid).
        fs.mkdirSync(path.join(sessionsDir, `pod-${i}`), { recursive: true });
        fs.writeFileSync(path.join(sessionsDir, `pod-${i}`, '4000000'), '4000001 4000000 123 203.0.113.2 5000 203.0.113.1 4444\n');
      }
      fs.mkdirSync(connsDir, { recursive: true });
      let ticks = 0;
      const timer = setInterval(() => ticks++, 0);
      const removed = await sweepStaleRecords({ sessionsDir, connsDir });
      clearInterval(timer);
      expect(removed).toBe(3000);
      expect(fs.readdirSync(sessionsDir)).toEqual([]);
      // 3,000 pods in slices of 256: the loop ran timers in between, not once at the end.
      expect(ticks).toBeGreaterThanOrEqual(5);
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
});
