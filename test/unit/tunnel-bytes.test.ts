/**
 * The per-pod byte counters: nftables' counter sets (one per address and port) read and attributed to
 * the pod that holds the port at that address's slot. With address slots two pods share a port number.
 */
import { describe, expect, it } from 'vitest';
import { endpointSlot } from '../../src/metrics/collect.js';
import { joinCounters, mergeCounters, parseSetCounters } from '../../src/metrics/tunnel-bytes.js';
import { testConfig } from '../helpers/fixtures.js';

/** `nft -j list set` output as nftables 1.0.6 prints it for an `addr . inet_service` set. */
const setJson = (elems: [string, number, number][]) => JSON.stringify({
  nftables: [
    { metainfo: { version: '1.0.6', json_schema_version: 1 } },
    { set: { family: 'inet', name: 'tunnel_in4', table: 'pipe2me', type: ['ipv4_addr', 'inet_service'], size: 65535, elem: elems.map(([a, p, b]) => ({ elem: { val: { concat: [a, p] }, counter: { packets: 1, bytes: b } } })) } },
  ],
});

describe('tunnel byte counters', () => {
  it('reads each address and port with its bytes; IPv6 in its canonical spelling; an element of another shape is skipped', () => {
    const json = JSON.parse(setJson([['203.0.113.10', 20001, 325], ['2001:DB8:0:0::1', 20001, 7]])) as { nftables: { set?: { elem: unknown[] } }[] };
    json.nftables[1]!.set!.elem.push({ elem: { val: { concat: [20002, '203.0.113.10'] }, counter: { bytes: 9 } } }, { elem: { val: 'x', counter: { bytes: 9 } } }, null);
    const m = parseSetCounters(JSON.stringify(json));
    expect([...m.values()]).toEqual([{ address: '203.0.113.10', port: 20001, bytes: 325 }, { address: '2001:db8::1', port: 20001, bytes: 7 }]);
  });

  it('without address slots the sets are by port alone (as nftables 1.0.6 prints an inet_service set): the address is any', () => {
    const json = '{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"set": {"family": "inet", "name": "tunnel_in4", "table": "pipe2me", "type": "inet_service", "handle": 6, "size": 65535, "elem": [{"elem": {"val": 20001, "counter": {"packets": 9, "bytes": 492}}}, {"elem": {"val": 20002, "counter": {"packets": 1, "bytes": 60}}}]}}]}';
    expect([...parseSetCounters(json).values()]).toEqual([{ address: '', port: 20001, bytes: 492 }, { address: '', port: 20002, bytes: 60 }]);
    expect(endpointSlot(testConfig())('')).toBe(0);
  });

  it('without slots a port that carried IPv4 and IPv6 has both families\' bytes (the two sets share the key)', () => {
    const portSet = (name: string, bytes: number) => JSON.stringify({ nftables: [{ set: { name, type: 'inet_service', elem: [{ elem: { val: 20001, counter: { packets: 1, bytes } } }] } }] });
    const merged = mergeCounters(parseSetCounters(portSet('tunnel_in4', 1000)), parseSetCounters(portSet('tunnel_in6', 7)));
    expect([...merged.values()]).toEqual([{ address: '', port: 20001, bytes: 1007 }]);
    expect(joinCounters(merged, new Map()).total.in).toBe(1007);
  });

  it('an empty set (no traffic yet) reads as nothing', () => {
    expect(parseSetCounters(JSON.stringify({ nftables: [{ set: { name: 'tunnel_out6' } }] })).size).toBe(0);
  });

  it('joins in and out by endpoint and sums the totals', () => {
    const inb = parseSetCounters(setJson([['203.0.113.10', 20001, 100], ['203.0.113.11', 20001, 50]]));
    const outb = parseSetCounters(setJson([['203.0.113.10', 20001, 1000]]));
    const t = joinCounters(inb, outb);
    expect(t.total).toEqual({ in: 150, out: 1000 });
    expect(t.endpoints).toEqual([
      { address: '203.0.113.10', port: 20001, in: 100, out: 1000 },
      { address: '203.0.113.11', port: 20001, in: 50, out: 0 },
    ]);
  });

  it('without address slots every address is slot 0 (ports are fleet-wide)', () => {
    const slotOf = endpointSlot(testConfig());
    expect(slotOf('203.0.113.1')).toBe(0);
    expect(slotOf('127.0.0.1')).toBe(0);
  });

  it('with address slots an address is the slot it is of this relay, IPv6 spelled any way; another relay\'s or an unknown address is none', () => {
    const c = testConfig({
      server: {},
      relay: 'relay-b',
      relays: [
        { name: 'relay-a', ipv4: ['203.0.113.10', '203.0.113.21'] },
        { name: 'relay-b', ipv4: ['203.0.113.20', '203.0.113.22'], ipv6: ['2001:db8::20', '2001:db8::22'] },
      ],
      state: { url: 'postgres://p2m@db.invalid/p2m' },
    });
    const slotOf = endpointSlot(c);
    expect(slotOf('203.0.113.20')).toBe(0);
    expect(slotOf('203.0.113.22')).toBe(1);
    expect(slotOf('2001:DB8:0::22')).toBe(1);
    expect(slotOf('203.0.113.21')).toBeNull();
    expect(slotOf('127.0.0.1')).toBeNull();
  });
});
