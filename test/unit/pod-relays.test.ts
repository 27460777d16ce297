/**
 * The pod's side of several relays: the server's list is taken only in the shape a pipe2me server sends
 * (it reaches ssh's arguments), each relay's key is pinned under its own alias, the pod starts at its home
 * relay (or the operator's pin), and the real ssh wrapper walks the list one relay per attempt.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { checkRelays, knownHostsText, relayOrder, relaysFileText } from '../../src/pod/relays.js';
import { sshWrapperScript } from '../../src/pod/tunnel.js';
import { stableHash } from '../../src/render/relays.js';
import type { PodState } from '../../src/pod/files.js';

const KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJNkg2iZ4wV/GMl8F1UwmTiDVTF3DyTqDIpGX/AP8eUQ';
const answer = (name: string, host: string) => ({ name, host, host6: null, port: 4444, user: 'pipe2me-tunnel', host_key: KEY, host_key_alias: `pipe2me-${name}.pipe.test` });
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'p2m-pod-relays-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('the relays a pod is told about', () => {
  it('takes a well-formed list and refuses anything that could reach ssh\'s arguments in another shape', () => {
    expect(checkRelays([answer('relay-a', '198.51.100.10'), answer('relay-b', '198.51.100.20')])?.map((r) => r.name)).toEqual(['relay-a', 'relay-b']);
    for (const bad of [
      [{ ...answer('relay-a', '198.51.100.10'), name: 'a b' }],
      [{ ...answer('relay-a', '198.51.100.10'), name: 'x\n-oProxyCommand=sh' }],
      [answer('relay-a', 'relay.example.com')],
      [{ ...answer('relay-a', '198.51.100.10'), host_key: `${KEY} extra` }],
      [{ ...answer('relay-a', '198.51.100.10'), user: '-oX' }],
      [{ ...answer('relay-a', '198.51.100.10'), port: 0 }],
      [{ ...answer('relay-a', '198.51.100.10'), host6: 'not-an-address' }],
      [], 'relay-a', null,
    ]) expect(checkRelays(bad), JSON.stringify(bad)).toBeNull();
  });

  it('pins every relay\'s key under its own alias, the setup\'s own line first', () => {
    const relays = checkRelays([answer('relay-a', '198.51.100.10'), answer('relay-b', '198.51.100.20')])!;
    expect(knownHostsText({ relays } as PodState, { alias: 'pipe2me-pipe.test', key: KEY })).toBe(
      `pipe2me-pipe.test ${KEY}\npipe2me-relay-a.pipe.test ${KEY}\npipe2me-relay-b.pipe.test ${KEY}\n`);
  });

  it('starts at the home relay (a stable hash of the pod\'s name) or the pinned one, then goes round', () => {
    const relays = checkRelays(['relay-a', 'relay-b', 'relay-c'].map((n, i) => answer(n, `198.51.100.${10 + i}`)))!;
    const name = 'calm-red-otter';
    const home = stableHash(name) % 3;
    expect(relayOrder({ name, relays }).map((r) => r.name)).toEqual([0, 1, 2].map((i) => relays[(home + i) % 3]!.name));
    expect(relayOrder({ name, relays }, 'relay-c').map((r) => r.name)).toEqual(['relay-c', 'relay-a', 'relay-b']);
    expect(relaysFileText({ name, relays }, { v4: true, v6: true }, 'relay-b')).toBe(
      'relay-b pipe2me-relay-b.pipe.test 198.51.100.11 4444 pipe2me-tunnel -\nrelay-c pipe2me-relay-c.pipe.test 198.51.100.12 4444 pipe2me-tunnel -\nrelay-a pipe2me-relay-a.pipe.test 198.51.100.10 4444 pipe2me-tunnel -\n');
  });

  it('the real wrapper sends each attempt to the next relay, naming it on stderr, with the relay\'s address, alias, port and user given first', () => {
    const fake = path.join(tmp, 'fake-ssh');
    fs.writeFileSync(fake, '#!/bin/sh\nprintf "%s\\n" "$*"\n', { mode: 0o755 });
    const list = path.join(tmp, 'relays');
    const next = path.join(tmp, 'relay-next');
    const state = path.join(tmp, 'backoff');
    fs.writeFileSync(list, 'relay-b pipe2me-relay-b.pipe.test 198.51.100.20 4444 tun -\nrelay-a pipe2me-relay-a.pipe.test 198.51.100.10 4445 tun -\n');
    const wrapper = path.join(tmp, 'ssh-backoff');
    fs.writeFileSync(wrapper, sshWrapperScript(state, fake, { list, next }), { mode: 0o700 });
    const runOnce = () => {
      fs.writeFileSync(state, 'now\n');
      return execFileSync(wrapper, ['-T', '-R', '20000:localhost:8080', 'pipe2me-relay'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 10_000 }).trim();
    };
    expect(runOnce()).toBe('-o HostName=198.51.100.20 -o HostKeyAlias=pipe2me-relay-b.pipe.test -o Port=4444 -o User=tun -T -R 20000:localhost:8080 pipe2me-relay');
    expect(runOnce()).toBe('-o HostName=198.51.100.10 -o HostKeyAlias=pipe2me-relay-a.pipe.test -o Port=4445 -o User=tun -T -R 20000:localhost:8080 pipe2me-relay');
    expect(runOnce()).toContain('HostName=198.51.100.20');
    // After a session that was up (the pod writes 0), the first attempt goes at once, to the next relay,
    // and counts as a failure: the one after it waits (the backoff), so a fleet without any relay is not hammered.
    // (Three times: the backoff's random wait is under 300 ms one time in seven, never three times running.)
    for (let i = 0; i < 3; i++) {
      fs.writeFileSync(state, '0\n');
      const t0 = Date.now();
      execFileSync(wrapper, ['pipe2me-relay'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 10_000 });
      expect(Date.now() - t0).toBeLessThan(300);
      expect(fs.readFileSync(state, 'utf8').trim()).toBe('1');
    }
    // The wait grows per round of the relay list, not per attempt (a fake sleep on PATH says each wait):
    // after 3 failures with 2 relays the window is base × 2^1 = 4 s; with 1 relay base × 2^3 = 16 s.
    const bin = path.join(tmp, 'bin');
    fs.mkdirSync(bin, { recursive: true });
    fs.writeFileSync(path.join(bin, 'sleep'), '#!/bin/sh\necho "slept $1" >&2\n', { mode: 0o755 });
    const waits = (failures: number, runs = 20) => Array.from({ length: runs }, () => {
      fs.writeFileSync(state, `${failures}\n`);
      const r = spawnSync(wrapper, ['pipe2me-relay'], { encoding: 'utf8', env: { ...process.env, PATH: `${bin}:${process.env.PATH}` }, timeout: 10_000 });
      return Number(/slept ([0-9.]+)/.exec(r.stderr)?.[1]);
    });
    const two = waits(3);
    expect(Math.max(...two), two.join(' ')).toBeLessThan(4);
    expect(Math.max(...two), two.join(' ')).toBeGreaterThanOrEqual(2);
    const saved = fs.readFileSync(list, 'utf8');
    fs.writeFileSync(list, saved.split('\n')[0] + '\n');
    const one = waits(3);
    expect(Math.max(...one), one.join(' ')).toBeGreaterThanOrEqual(4);
    expect(Math.max(...one), one.join(' ')).toBeLessThan(16);
    fs.writeFileSync(list, saved);
    // A damaged position file starts again at the first relay.
    fs.writeFileSync(next, 'x; rm -rf /\n');
    expect(runOnce()).toContain('HostName=198.51.100.20');

    // Address slots: every -R listens on that relay's addresses of the pod's slot, one per family; the
    // other arguments stay as they were, in order.
    fs.writeFileSync(list, 'relay-b pipe2me-relay-b.pipe.test 198.51.100.20 4444 tun 198.51.100.21,2001:db8::21\nrelay-a pipe2me-relay-a.pipe.test 198.51.100.10 4445 tun 198.51.100.11\n');
    fs.writeFileSync(next, '0\n');
    const slotted = () => {
      fs.writeFileSync(state, 'now\n');
      return execFileSync(wrapper, ['-T', '-R', '20000:localhost:8080', '-o', 'X=1', '-R', '20001:[::1]:9443', 'pipe2me-relay'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 10_000 }).trim();
    };
    expect(slotted()).toBe('-o HostName=198.51.100.20 -o HostKeyAlias=pipe2me-relay-b.pipe.test -o Port=4444 -o User=tun -T ' +
      '-R 198.51.100.21:20000:localhost:8080 -R [2001:db8::21]:20000:localhost:8080 -o X=1 -R 198.51.100.21:20001:[::1]:9443 -R [2001:db8::21]:20001:[::1]:9443 pipe2me-relay');
    expect(slotted()).toContain('-R 198.51.100.11:20000:localhost:8080 -o X=1 -R 198.51.100.11:20001:[::1]:9443 pipe2me-relay');
  });
});
