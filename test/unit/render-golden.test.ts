/**
 * Golden files for every template. Set UPDATE_GOLDEN=1 to rewrite them after an intended change, then
 * read the diff before committing it.
 */
import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { renderAll } from '../../src/render/render.js';
import { goldenSubdomains, testConfig } from '../helpers/fixtures.js';

const GOLDEN = path.join(import.meta.dirname, '..', 'golden');

function check(dir: string, files: { path: string; content: string }[]) {
  for (const f of files) {
    const golden = path.join(GOLDEN, dir, path.basename(f.path));
    if (process.env.UPDATE_GOLDEN) {
      fs.mkdirSync(path.dirname(golden), { recursive: true });
      fs.writeFileSync(golden, f.content);
    }
    expect(f.content, `${f.path} differs from ${golden}`).toBe(fs.readFileSync(golden, 'utf8'));
  }
}

describe('rendered files match their golden copies', () => {
  it('BIND: sshd_config, session holder, key lookup, key index, nginx.conf and maps, zone, named.conf', () => {
    const files = renderAll(testConfig(), goldenSubdomains());
    expect(files.map((f) => path.basename(f.path)).sort()).toEqual(
      ['entry.map', 'keys.list', 'named.conf', 'nginx.conf', 'pipe.test.zone', 'pipe2me-keys', 'pipe2me-session', 'pipe2me.nft', 'sni-port.map', 'sni-route.map', 'sshd_config'].sort());
    check('bind', files);
  });

  it('NSD: nsd.conf and the zone', () => {
    const files = renderAll(testConfig({ dns: { daemon: 'nsd', ttl: 30, secondaries: [{ name: 'ns2.pipe.test', ipv4: '203.0.113.5' }] } }), goldenSubdomains(), ['dns']);
    check('nsd', files);
  });

  it('IPv6: listen addresses and AAAA records', () => {
    const files = renderAll(testConfig({ server: { ipv4: '203.0.113.1', ipv6: '2001:db8::1' } }), goldenSubdomains().slice(0, 1));
    check('ipv6', files.filter((f) => /sshd_config|nginx.conf|zone|named.conf/.test(f.path)));
  });
});
