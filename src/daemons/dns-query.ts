/**
 * Asking a nameserver directly for a zone's SOA serial, over TCP with a timeout: how apply knows that a
 * reload it asked for is being served (rndc and nsd-control return before the new zone is live).
 */
import * as net from 'node:net';
import dnsPacket from 'dns-packet';
import { randomBytes } from 'node:crypto';
import type { Config } from '../config/types.js';
import { DaemonError } from '../util/errors.js';
import { waitUntil } from './process.js';

type Answer = dnsPacket.Packet & { rcode?: string };

/**
 * One question to one nameserver over TCP, the answer decoded by dns-packet. TCP because these questions
 * come in quick succession while a wait polls: the nameservers' response-rate limiting (which pipe2me
 * configures against reflection) slips and drops identical UDP answers, and never applies to TCP. Node's
 * own resolver is not used because c-ares (1.23 and later) caches answers for their TTL: a wait for a new
 * serial would see the old one for as long as the SOA's TTL.
 */
async function ask<T>(server: string, name: string, type: 'SOA' | 'TXT', pick: (a: Answer) => T | null, timeoutMs: number): Promise<T | null> {
  const id = randomBytes(2).readUInt16BE(0);
  const query = dnsPacket.streamEncode({ type: 'query', id, flags: 0, questions: [{ type, class: 'IN', name: name.replace(/\.$/, '') }] });
  return new Promise<T | null>((resolve) => {
    const sock = net.connect({ host: server, port: 53 });
    let buf = Buffer.alloc(0);
    const done = (v: T | null) => {
      clearTimeout(timer);
      sock.destroy();
      resolve(v);
    };
    const timer = setTimeout(() => done(null), timeoutMs);
    sock.on('connect', () => sock.write(query));
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length < 2 || buf.length < 2 + buf.readUInt16BE(0)) return;
      let a: Answer;
      try {
        a = dnsPacket.streamDecode(buf) as Answer;
      } catch {
        return done(null);
      }
      done(a.id === id && a.type === 'response' ? pick(a) : null);
    });
    sock.on('error', () => done(null));
  });
}

/** The serial of the SOA a NOERROR answer holds, or null. */
export function soaSerialOf(a: Answer): number | null {
  if (a.rcode !== undefined && a.rcode !== 'NOERROR') return null;
  const soa = (a.answers ?? []).find((r): r is dnsPacket.SoaAnswer => r.type === 'SOA');
  return soa?.data.serial ?? null;
}

/** The TXT strings of a NOERROR or NXDOMAIN answer (each record's strings joined), or null. */
export function txtOf(a: Answer): string[] | null {
  if (a.rcode !== undefined && a.rcode !== 'NOERROR' && a.rcode !== 'NXDOMAIN') return null;
  return (a.answers ?? []).filter((r) => r.type === 'TXT').map((r) => {
    const data = (r as { data: Buffer | string | (Buffer | string)[] }).data;
    return (Array.isArray(data) ? data : [data]).map((d) => (typeof d === 'string' ? d : d.toString('latin1'))).join('');
  });
}

/** The TXT values a nameserver serves for `name` (asked directly, no recursion), or null if it did not answer. */
export function txtRecords(server: string, name: string, timeoutMs = 1000): Promise<string[] | null> {
  return ask(server, name, 'TXT', txtOf, timeoutMs);
}

export async function soaSerial(server: string, zone: string, timeoutMs = 1000): Promise<number | null> {
  return ask(server, zone, 'SOA', soaSerialOf, timeoutMs);
}

/** RFC 1982: is serial a at or after b? */
export function serialAtLeast(a: number, b: number): boolean {
  return a === b || ((a - b) >>> 0) < 0x80000000;
}

/**
 * After a reload: wait until the primary serves the zone with `serial` (or a later one). rndc and
 * nsd-control only queue the reload; a client asking right after apply returned must see the new zone.
 */
export async function waitForSerial(c: Config, serial: number | null, daemon: string, timeoutMs = 10_000): Promise<void> {
  if (serial === null) return;
  const took = await waitUntil(async () => {
    const live = await soaSerial(c.server.ipv4, c.domain, 300);
    return live !== null && serialAtLeast(live, serial);
  }, timeoutMs, 5);
  if (took === null) {
    throw new DaemonError('reload_timeout', `${daemon} did not serve serial ${serial} of ${c.domain} within ${timeoutMs / 1000} s of its reload.`, {
      hint: `Look at ${daemon}'s log; the checked zone is in place. \`pipe2me-ctl apply\` again retries.`,
    });
  }
}
