/**
 * The probe's connections end with a reset once their answer is in (src/probe/checks.ts): a service that
 * greets first and one that speaks http, on loopback, checked through the probe's own functions; after
 * them, no socket of theirs is left in TIME_WAIT on this side (read with `ss`, the kernel's own list).
 */
import { afterEach, describe, expect, it } from 'vitest';
import * as http from 'node:http';
import * as net from 'node:net';
import { httpHead, tcpBanner } from '../../src/probe/checks.js';
import { run } from '../../src/util/exec.js';

const servers: { close(): void }[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.close();
});

function listen(server: net.Server): Promise<number> {
  servers.push(server);
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port)));
}

/**
 * This side's sockets to 127.0.0.1:port in any state, as the kernel lists them, a moment after the checks:
 * a connection closed with a FIN lingers (FIN-WAIT, then TIME-WAIT for a minute), one reset is gone.
 */
async function timeWait(port: number): Promise<number> {
  await new Promise((r) => setTimeout(r, 100));
  const r = await run('ss', ['-Htan', 'dst', `127.0.0.1:${port}`], { timeout: 5000 });
  return r.stdout.split('\n').filter((l) => l.trim()).length;
}

describe('the probe\'s checks', () => {
  it('a greeting service: the banner is read, and the connection ends with a reset, not in TIME_WAIT', async () => {
    const port = await listen(net.createServer((c) => {
      c.on('error', () => {});
      c.write('SSH-2.0-example\r\n');
    }));
    for (let i = 0; i < 20; i++) expect((await tcpBanner('127.0.0.1', port, 2000)).toString()).toBe('SSH-2.0-example\r\n');
    expect(await timeWait(port)).toBe(0);
  });

  it('a silent service: nothing is read within the wait, and the connection ends with a reset too', async () => {
    const port = await listen(net.createServer((c) => c.on('error', () => {})));
    expect((await tcpBanner('127.0.0.1', port, 2000, 50)).length).toBe(0);
    expect(await timeWait(port)).toBe(0);
  });

  it('an http service: the answer is read, and the connection ends with a reset', async () => {
    const server = http.createServer((req, res) => {
      req.socket.on('error', () => {});
      // The body never ends: the probe, not the service, is the one that ends the connection.
      res.writeHead(302, { location: 'https://x.pipe.test/', server: 'example' });
      res.write('moved');
    });
    const port = await listen(server);
    for (let i = 0; i < 10; i++) {
      const a = await httpHead('127.0.0.1', port, 'x.pipe.test', 2000);
      expect([a.status, a.location, a.server]).toEqual([302, 'https://x.pipe.test/', 'example']);
    }
    expect(await timeWait(port)).toBe(0);
  });
});
