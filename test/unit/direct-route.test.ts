/**
 * The direct route's pure parts on more networks: what natpmpc and upnpc -6 print (copied from runs
 * against Debian's miniupnpd 2.3.1 in the test world), the pod's own port translation, which server
 * address the tunnel takes, and the records per address family.
 */
import { describe, expect, it } from 'vitest';
import { natpmpFailure, parseMapping, parsePublicAddress } from '../../src/pod/router/natpmp.js';
import { parsePinholeId, pinholeRenewed, upnpFailure } from '../../src/pod/router/upnp.js';
import { translationScript, translationTable } from '../../src/pod/router/translate.js';
import { globalIpv6 } from '../../src/pod/router/ipv6.js';
import { wantedMappings } from '../../src/pod/router/ipv4.js';
import { defaultRoutes, tunnelHost } from '../../src/pod/tunnel.js';
import { podRecords } from '../../src/render/entries.js';
import { testConfig, sub } from '../helpers/fixtures.js';

const NATPMP_ADD = `initnatpmp() returned 0 (SUCCESS)
using gateway : 192.168.77.1
sendpublicaddressrequest returned 2 (SUCCESS)
readnatpmpresponseorretry returned 0 (OK)
Public IP address : 203.0.113.2
epoch = 51
sendnewportmappingrequest returned 12 (SUCCESS)
readnatpmpresponseorretry returned 0 (OK)
Mapped public port 18080 protocol TCP to local port 8080 liftime 3600
epoch = 51
closenatpmp() returned 0 (SUCCESS)
`;

describe('natpmpc output', () => {
  it('a mapping: the public address and the port and lifetime granted', () => {
    expect(parsePublicAddress(NATPMP_ADD)).toBe('203.0.113.2');
    expect(parseMapping(NATPMP_ADD)).toEqual({ publicPort: 18080, privatePort: 8080, lifetime: 3600 });
    expect(parseMapping(NATPMP_ADD.replace('liftime', 'lifetime'))).toEqual({ publicPort: 18080, privatePort: 8080, lifetime: 3600 });
  });

  it('a refusal and a gateway without NAT-PMP say what happened', () => {
    const refused = `${NATPMP_ADD.split('sendnewport')[0]}sendnewportmappingrequest returned 12 (SUCCESS)\nreadnatpmpresponseorretry returned -51 (FAILED)\nreadnatpmpresponseorretry() failed : not authorized\n`;
    expect(parseMapping(refused)).toBeNull();
    expect(natpmpFailure(refused)).toMatchObject({ ok: false, code: '-51', detail: 'the router refused the mapping (not authorized)' });
    const none = "initnatpmp() returned 0 (SUCCESS)\nusing gateway : 192.168.77.11\nsendpublicaddressrequest returned 2 (SUCCESS)\nreadnatpmpresponseorretry returned -7 (FAILED)\nreadnatpmpresponseorretry() failed : the gateway does not support nat-pmp\n";
    expect(parsePublicAddress(none)).toBeNull();
    expect(natpmpFailure(none).detail).toMatch(/does not speak NAT-PMP/);
  });
});

describe('upnpc -6 (IGD2 pinholes) output', () => {
  it('the pinhole id of an AddPinhole, and nothing for a refusal', () => {
    expect(parsePinholeId('Found valid IGD : http://[2001:db8:77::1]:5000/ctl/IPConn\nAddPinhole: ([]:0 -> [2001:db8:77::10]:8080) / Pinhole ID = 1\n')).toBe(1);
    const refused = 'AddPinhole([]:0 -> [2001:db8:77::10]:80) failed with code 606 (Action not authorized)\n';
    expect(parsePinholeId(refused)).toBeNull();
    expect(upnpFailure(refused, 'x')).toMatchObject({ code: '606' });
    expect(upnpFailure('AddPinhole([]:0 -> [2001:db8:77::10]:8081) failed with code 402 (Invalid Args)', 'x').detail).toMatch(/1-86400/);
  });

  it('a renewal counts only when UpdatePinhole itself said so', () => {
    const ok = 'CheckPinholeWorking: Pinhole ID = 1 / IsWorking = No\nCheckPinholeWorking() failed with code 709 (NoPacketSent)\nUpdatePinhole: Pinhole ID = 1 with Lease Time: 7200\n';
    expect(pinholeRenewed(ok, 1)).toBe(true);
    expect(pinholeRenewed(ok, 2)).toBe(false);
    expect(pinholeRenewed('CheckPinholeWorking: Pinhole ID = 99 / IsWorking = No\nCheckPinholeWorking() failed with code 402 (Invalid Args)\n', 99)).toBe(false);
    expect(pinholeRenewed(`${ok}UpdatePinhole: ID (1) failed with code 704 (NoSuchEntry)\n`, 1)).toBe(false);
  });
});

describe("the pod's own port translation for IPv6", () => {
  const table = translationTable('id-alpha');
  it('is one atomic nft script that DNATs public ports to local ones at the pod\'s address', () => {
    expect(table).toMatch(/^pipe2me_[0-9a-f]{12}$/);
    expect(translationTable('id-alpha')).toBe(table);
    const script = translationScript(table, '2001:db8:77::10', [{ publicPort: 20001, localPort: 8080 }, { publicPort: 9000, localPort: 9000 }]);
    expect(script).toContain(`add table ip6 ${table}\ndelete table ip6 ${table}\n`);
    expect(script).toContain('ip6 daddr 2001:db8:77::10 tcp dport 20001 dnat to [2001:db8:77::10]:8080');
    expect(script).not.toContain('dport 9000'); // same port: nothing to translate
  });

  it('refuses what is not an address or a port', () => {
    expect(() => translationScript(table, '2001:db8::1; flush ruleset', [])).toThrow(/not an IPv6 address/);
    expect(() => translationScript(table, '2001:db8::1', [{ publicPort: 70000, localPort: 1 }])).toThrow(/bad port/);
    expect(() => translationScript('filter', '2001:db8::1', [])).toThrow(/bad table/);
  });
});

describe('which addresses the pod uses', () => {
  const iface = (address: string, internal = false) => ({ address, family: 'IPv6' as const, internal, netmask: 'ffff:ffff:ffff:ffff::', mac: '', cidr: null, scopeid: 0 });
  it('its global IPv6 address, never a link-local, unique-local or loopback one', () => {
    expect(globalIpv6({ lo: [iface('::1', true)], eth0: [iface('fe80::1'), iface('fd00::5'), iface('2001:DB8:77:0::10')] })).toBe('2001:db8:77::10');
    expect(globalIpv6({ eth0: [iface('fe80::1'), iface('fd00::5')] })).toBeNull();
  });

  it('the tunnel goes over IPv4 whenever there is an IPv4 default route, over IPv6 only without one', () => {
    const s = { ssh: { host: '203.0.113.1', host6: '2001:db8:0:1::1', port: 4444, user: 't', hostKeyAlias: 'a' } };
    expect(tunnelHost(s, { v4: true, v6: true })).toBe('203.0.113.1');
    expect(tunnelHost(s, { v4: false, v6: true })).toBe('2001:db8:0:1::1');
    expect(tunnelHost({ ssh: { ...s.ssh, host6: null } }, { v4: false, v6: true })).toBe('203.0.113.1');
    const v4 = 'Iface\tDestination\tGateway\tFlags\nwan0\t00000000\t0100A8C0\t0003\n';
    const v6 = `${'0'.repeat(32)} 00 ${'0'.repeat(32)} 00 20010db8000000010000000000000002 00000400 00000003 00000000 00000003     eth0\n`;
    const unreachable = `${'0'.repeat(32)} 00 ${'0'.repeat(32)} 00 ${'0'.repeat(32)} ffffffff 00000001 00000000 00200200       lo\n`;
    expect(defaultRoutes((p) => (p.endsWith('ipv6_route') ? v6 : v4))).toEqual({ v4: true, v6: true });
    expect(defaultRoutes((p) => (p.endsWith('ipv6_route') ? v6 : 'Iface\tDestination\n'))).toEqual({ v4: false, v6: true });
    expect(defaultRoutes((p) => (p.endsWith('ipv6_route') ? unreachable : v4))).toEqual({ v4: true, v6: false });
    expect(defaultRoutes(() => null)).toEqual({ v4: true, v6: true });
  });
});

describe('records per address family', () => {
  const c = testConfig({ server: { ipv4: '203.0.113.1', ipv6: '2001:db8:0:1::1' } });
  const s = sub('alpha', ['https'], 20001);
  it('A follows the IPv4 route and AAAA the IPv6 one, each on its own', () => {
    const rec = (x: Partial<typeof s>) => podRecords({ ...s, ...x }, c).map((r) => `${r.type} ${r.value} ${r.source}`);
    expect(rec({})).toEqual([`A ${c.server.ipv4} config`, 'AAAA 2001:db8:0:1::1 config']);
    expect(rec({ route: 'direct', directIpv4: '198.51.100.7' })).toEqual(['A 198.51.100.7 pod', 'AAAA 2001:db8:0:1::1 config']);
    expect(rec({ route6: 'direct', directIpv6: '2001:db8:77::10' })).toEqual([`A ${c.server.ipv4} config`, 'AAAA 2001:db8:77::10 pod']);
    expect(rec({ route: 'direct', directIpv4: '198.51.100.7', route6: 'direct', directIpv6: '2001:db8:77::10' })).toEqual(['A 198.51.100.7 pod', 'AAAA 2001:db8:77::10 pod']);
  });

  it('without a server IPv6 address, AAAA exists only while the pod is direct over IPv6', () => {
    const c4 = testConfig();
    expect(podRecords(s, c4).map((r) => r.type)).toEqual(['A']);
    expect(podRecords({ ...s, route6: 'direct', directIpv6: '2001:db8:77::10' }, c4).map((r) => `${r.type} ${r.value}`)).toEqual([`A ${c4.server.ipv4}`, 'AAAA 2001:db8:77::10']);
  });

  it('the same mappings are wanted over IPv4 and IPv6: services on loopback and the web entries', () => {
    const st = { passthrough: false, services: [{ protocol: 'https' as const, port: 20001, localHost: 'localhost', localPort: 8443 }, { protocol: 'tcp' as const, port: 20002, localHost: '192.168.1.5', localPort: 22 }] };
    expect(wantedMappings(st, { httpPort: 40001, httpsPort: 40002 })).toEqual([
      { externalPort: 20001, internalPort: 8443, what: 'https' },
      { externalPort: 80, internalPort: 40001, what: 'http entry' },
      { externalPort: 443, internalPort: 40002, what: 'https entry' },
    ]);
  });
});
