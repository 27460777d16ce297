/**
 * Asking a nameserver directly for a zone's SOA serial, over UDP with a timeout: how apply knows that a
 * reload it asked for is being served (rndc and nsd-control return before the new zone is live).
 */
import dgram from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { isIPv6 } from 'node:net';
import type { Config } from '../config/types.js';
import { DaemonError } from '../util/errors.js';
import { waitUntil } from './process.js';

function encodeName(name: string): Buffer {
  const parts = name.replace(/\.$/, '').split('.').filter(Boolean);
  return Buffer.concat([...parts.map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l, 'ascii')])), Buffer.from([0])]);
}

function skipName(msg: Buffer, off: number): number {
  for (;;) {
    const len = msg[off];
    if (len === undefined) throw new Error('truncated name');
    if ((len & 0xc0) === 0xc0) return off + 2;
    if (len === 0) return off + 1;
    off += 1 + len;
  }
}

/** The serial of the SOA the server answers for `zone` (authoritatively), or null when it does not. */
export function parseSoaSerial(msg: Buffer, id: number): number | null {
  if (msg.length < 12 || msg.readUInt16BE(0) !== id) return null;
  const flags = msg.readUInt16BE(2);
  if ((flags & 0x8000) === 0 || (flags & 0x000f) !== 0) return null; // not a response, or rcode != NOERROR
  const qd = msg.readUInt16BE(4);
  const an = msg.readUInt16BE(6);
  let off = 12;
  for (let i = 0; i < qd; i++) off = skipName(msg, off) + 4;
  for (let i = 0; i < an; i++) {
    off = skipName(msg, off);
    const type = msg.readUInt16BE(off);
    const rdlen = msg.readUInt16BE(off + 8);
    const rdata = off + 10;
    if (type === 6) {
      const afterMname = skipName(msg, rdata);
      const afterRname = skipName(msg, afterMname);
      return msg.readUInt32BE(afterRname);
    }
    off = rdata + rdlen;
  }
  return null;
}

/** The TXT strings of `name` in an answer (each record's strings joined), or null when it is not a NOERROR/NXDOMAIN answer. */
export function parseTxt(msg: Buffer, id: number): string[] | null {
  if (msg.length < 12 || msg.readUInt16BE(0) !== id) return null;
  const flags = msg.readUInt16BE(2);
  const rcode = flags & 0x000f;
  if ((flags & 0x8000) === 0 || (rcode !== 0 && rcode !== 3)) return null;
  const qd = msg.readUInt16BE(4);
  const an = msg.readUInt16BE(6);
  let off = 12;
  for (let i = 0; i < qd; i++) off = skipName(msg, off) + 4;
  const out: string[] = [];
  for (let i = 0; i < an; i++) {
    off = skipName(msg, off);
    const type = msg.readUInt16BE(off);
    const rdlen = msg.readUInt16BE(off + 8);
    const rdata = off + 10;
    if (type === 16) {
      let p = rdata;
      let text = '';
      while (p < rdata + rdlen) {
        const len = msg[p]!;
        text += msg.subarray(p + 1, p + 1 + len).toString('latin1');
        p += 1 + len;
      }
      out.push(text);
    }
    off = rdata + rdlen;
  }
  return out;
}

async function ask<T>(server: string, name: string, qtype: number, parse: (m: Buffer, id: number) => T | null, timeoutMs: number): Promise<T | null> {
  const id = randomBytes(2).readUInt16BE(0);
  const header = Buffer.alloc(12);
  header.writeUInt16BE(id, 0);
  header.writeUInt16BE(1, 4);
  const query = Buffer.concat([header, encodeName(name), Buffer.from([0, qtype, 0, 1])]);
  const sock = dgram.createSocket(isIPv6(server) ? 'udp6' : 'udp4');
  try {
    return await new Promise<T | null>((resolve) => {
      const timer = setTimeout(() => resolve(null), timeoutMs);
      sock.on('message', (m) => {
        const v = parse(m, id);
        if (v !== null) {
          clearTimeout(timer);
          resolve(v);
        }
      });
      sock.on('error', () => {
        clearTimeout(timer);
        resolve(null);
      });
      sock.send(query, 53, server);
    });
  } finally {
    sock.close();
  }
}

/** The TXT values a nameserver serves for `name` (asked directly, no recursion), or null if it did not answer. */
export function txtRecords(server: string, name: string, timeoutMs = 1000): Promise<string[] | null> {
  return ask(server, name, 16, parseTxt, timeoutMs);
}

export async function soaSerial(server: string, zone: string, timeoutMs = 1000): Promise<number | null> {
  return ask(server, zone, 6, parseSoaSerial, timeoutMs);
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
