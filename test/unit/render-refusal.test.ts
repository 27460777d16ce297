import { describe, expect, it } from 'vitest';
import { renderAll } from '../../src/render/render.js';
import { assertKeyLineRestricted } from '../../src/render/fragments.js';
import { RenderRefusedError, renderTemplate } from '../../src/render/templates.js';
import { sub, testConfig } from '../helpers/fixtures.js';

// Names are validated on input; these tests prove the renderers refuse again on output.
describe('renderers refuse what a format cannot hold', () => {
  const hostileNames = ['evil\nname', 'a"b', 'a;b', 'a{b', 'a b', 'café', 'x'.repeat(64)];
  for (const name of hostileNames) {
    it(`a record named ${JSON.stringify(name.slice(0, 12))} never reaches a file`, () => {
      const bad = sub('ok', ['http', 'https'], 20000, { name, fqdn: `${name}.pipe.test` });
      expect(() => renderAll(testConfig(), [bad])).toThrow(RenderRefusedError);
    });
  }

  it('a key blob with a newline or an option is refused', () => {
    const s = sub('ok', ['http'], 20000);
    s.key!.publicKey = 'ssh-ed25519 AAAA\nssh-ed25519 BBBB';
    expect(() => renderAll(testConfig(), [s], ['keys'])).toThrow(/is not an ssh public key/);
    s.key!.publicKey = 'command="sh" ssh-ed25519 AAAA';
    expect(() => renderAll(testConfig(), [s], ['keys'])).toThrow(/is not an ssh public key/);
  });

  it('a key line without permitlisten options cannot be rendered', () => {
    const F = 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA';
    const s = sub('ok', ['http'], 20000);
    const own = /restrict, port-forwarding and exactly its own ports/;
    expect(() => assertKeyLineRestricted(`AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA ssh-ed25519 AAAA pipe2me:ok`, { name: 'ok', file: F, ports: [20000] })).toThrow(own);
    expect(() => assertKeyLineRestricted(`AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA restrict,port-forwarding,command="exec /x ok" ssh-ed25519 AAAA pipe2me:ok`, { name: 'ok', file: F, ports: [20000] })).toThrow(own);
    expect(() => assertKeyLineRestricted(`AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA restrict,port-forwarding,permitlisten="20000",permitlisten="20001",command="exec /x ok" ssh-ed25519 AAAA pipe2me:ok`, { name: 'ok', file: F, ports: [20000] })).toThrow(own);
    expect(() => assertKeyLineRestricted(`AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA restrict,port-forwarding,permitlisten="20000" ssh-ed25519 AAAA`, { name: 'ok', file: F, ports: [20000] })).toThrow(own);
    expect(() => assertKeyLineRestricted(`AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA restrict,port-forwarding,permitlisten="20000",command="exec /x other" ssh-ed25519 AAAA`, { name: 'ok', file: F, ports: [20000] })).toThrow(/forced command/);
    expect(() => assertKeyLineRestricted(`AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA restrict,port-forwarding,permitlisten="20000",command="exec /x ok" ssh-ed25519 AAAA pipe2me:ok`, { name: 'ok', file: F, ports: [] })).toThrow(own);
    assertKeyLineRestricted(`AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA restrict,port-forwarding,permitlisten="20000",command="exec /x ok" ssh-ed25519 AAAA pipe2me:ok`, { name: 'ok', file: F, ports: [20000] });
    // A published subdomain's key always gets exactly its ports.
    const [file] = renderAll(testConfig(), [s], ['keys']);
    expect(file!.content).toContain('permitlisten="20000",command=');
  });

  it('a subdomain without ports gets no key line at all', () => {
    const s = sub('ok', [], 20000);
    const [file] = renderAll(testConfig(), [s], ['keys']);
    expect(file!.content).not.toContain('ssh-ed25519');
  });

  it('the zone template refuses an address of the wrong family, whatever reaches it', () => {
    const data = { domain: 'pipe.test', ttl: 30, primary: 'ns1.pipe.test', hostmaster: 'h.pipe.test', serial: '1', nameservers: ['ns1.pipe.test'] };
    expect(() => renderTemplate('zone/zone.hbs', { ...data, records: [{ owner: 'a.pipe.test', type: 'A', value: '2001:db8::1' }] })).toThrow(/is not an IPv4 address/);
    expect(() => renderTemplate('zone/zone.hbs', { ...data, records: [{ owner: 'a.pipe.test', type: 'AAAA', value: '192.0.2.1' }] })).toThrow(/is not an IPv6 address/);
    expect(() => renderTemplate('zone/zone.hbs', { ...data, records: [{ owner: 'a.pipe.test', type: 'A', value: '1.2.3.4 ; evil' }] })).toThrow(/is not an IPv4 address/);
  });
});

// No single pod's data may stop the control plane: a pod address that cannot be published is left out
// (with its reason) and the rest of the zone renders; the pod keeps the server's address.
describe('a pod address that may not be published is dropped, the zone still renders', () => {
  const cases: [string, RegExp][] = [
    ['1.2.3.4 ; evil', /is not an IP address/],
    ['2001:db8::7', /IPv6 address, not one an A record can hold/],
    ['2a00:1450:4001:80b::200e', /IPv6 address, not one an A record can hold/],
    ['10.1.2.3', /private address/],
    ['192.168.77.10', /private address/],
    ['100.64.1.1', /shared address/],
    ['127.0.0.1', /loopback address/],
    ['169.254.9.9', /link-local address/],
    ['224.0.0.1', /multicast address/],
    ['0.0.0.0', /unspecified address/],
    ['198.51.100.7', /documentation address/],
  ];
  for (const [value, why] of cases) {
    it(`direct address ${JSON.stringify(value)}`, () => {
      const bad = sub('bad', ['http'], 20000, { route: 'direct', directIpv4: value });
      const good = sub('good', ['http'], 20001, { route: 'direct', directIpv4: '8.8.4.4' });
      const [zone] = renderAll(testConfig(), [bad, good], ['dns']);
      expect(zone!.dropped).toEqual([{ where: 'zone', owner: 'bad.pipe.test', type: 'A', value, why: expect.stringMatching(why) }]);
      expect(zone!.content).toContain('bad.pipe.test. 30 IN A 203.0.113.1');
      expect(zone!.content).toContain('good.pipe.test. 30 IN A 8.8.4.4');
      expect(zone!.content).not.toContain(value);
    });
  }

  it('per family: a refused AAAA falls back to the server\'s AAAA and leaves the pod\'s verified A alone', () => {
    const c = testConfig({ server: { ipv4: '203.0.113.1', ipv6: '2001:db8:0:1::1' } });
    const bad6 = sub('six', ['http'], 20000, { route: 'direct', directIpv4: '8.8.4.4', route6: 'direct', directIpv6: 'fe80::1' });
    const ok6 = sub('ok', ['http'], 20001, { route6: 'direct', directIpv6: '2a00:1450:4001:80b::200e' });
    const [zone] = renderAll(c, [bad6, ok6], ['dns']);
    expect(zone!.dropped).toEqual([{ where: 'zone', owner: 'six.pipe.test', type: 'AAAA', value: 'fe80::1', why: expect.stringMatching(/link-local/) }]);
    expect(zone!.content).toContain('six.pipe.test. 30 IN A 8.8.4.4');
    expect(zone!.content).toContain('six.pipe.test. 30 IN AAAA 2001:db8:0:1::1');
    expect(zone!.content).toContain('ok.pipe.test. 30 IN A 203.0.113.1');
    expect(zone!.content).toContain('ok.pipe.test. 30 IN AAAA 2a00:1450:4001:80b::200e');
    // An IPv4 address where the IPv6 route's address belongs is refused the same way.
    const [z2] = renderAll(c, [sub('mixed', ['http'], 20002, { route6: 'direct', directIpv6: '8.8.8.8' })], ['dns']);
    expect(z2!.dropped![0]!.why).toMatch(/IPv4 address, not one an AAAA record can hold/);
  });

  it('a lab (dns.allow_non_global) publishes private and documentation addresses, never loopback or link-local', () => {
    const c = testConfig({ dns: { daemon: 'bind', ttl: 30, allow_non_global: true } });
    const subs = [
      sub('lan', ['http'], 20000, { route: 'direct', directIpv4: '192.168.77.10' }),
      sub('doc', ['http'], 20001, { route: 'direct', directIpv4: '198.51.100.7' }),
      sub('lo', ['http'], 20002, { route: 'direct', directIpv4: '127.0.0.1' }),
      sub('ll', ['http'], 20003, { route: 'direct', directIpv4: '169.254.1.1' }),
    ];
    const [zone] = renderAll(c, subs, ['dns']);
    expect(zone!.content).toContain('lan.pipe.test. 30 IN A 192.168.77.10');
    expect(zone!.content).toContain('doc.pipe.test. 30 IN A 198.51.100.7');
    expect(zone!.dropped!.map((d) => d.owner)).toEqual(['lo.pipe.test', 'll.pipe.test']);
  });
});

// The same rule for the key index: one pod's stored key that cannot be filed leaves that pod out, not the fleet.
describe('a key the index cannot file is left out, every other pod keeps its line', () => {
  it('a fingerprint that is not a SHA256 one, and a key an earlier pod already holds', () => {
    const good = sub('good', ['http'], 20000);
    const broken = sub('broken', ['http'], 20001);
    broken.key!.fingerprint = 'SHA256:acd8f037dc495ab4ab227b2c56b9bee9';
    const copy = sub('copycat', ['http'], 20002);
    copy.key = { ...good.key! };
    const after = sub('after', ['tcp'], 20003);
    const [file] = renderAll(testConfig(), [good, broken, copy, after], ['keys']);
    const lines = file!.content.split('\n').filter((l) => l && !l.startsWith('#'));
    expect(lines.map((l) => l.split(' pipe2me:')[1])).toEqual(['good', 'after']);
    expect(file!.dropped).toEqual([
      { where: 'key index', owner: 'broken.pipe.test', type: 'ssh key', value: 'SHA256:acd8f037dc495ab4ab227b2c56b9bee9', why: expect.stringMatching(/not a SHA256 fingerprint; the pod must register its key again/) },
      { where: 'key index', owner: 'copycat.pipe.test', type: 'ssh key', value: good.key!.fingerprint, why: expect.stringMatching(/the same key is good's/) },
    ]);
  });
});
