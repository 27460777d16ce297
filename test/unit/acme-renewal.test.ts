/**
 * When an ACME certificate is renewed: RFC 9773's certificate identifier (checked against the RFC's own
 * example, on a certificate made by the real openssl), the CA's suggested window, and the two-thirds rule
 * when there is none.
 *
 * Debian's Pebble 2.4 has no renewalInfo endpoint (it came in a later release), so the one place where a
 * real CA cannot answer is stood in for by a loopback HTTPS server that answers as RFC 9773 describes: a
 * directory with `renewalInfo` and one suggested window for exactly the identifier the RFC gives.
 */
import * as fs from 'node:fs';
import * as https from 'node:https';
import * as path from 'node:path';
import type { AddressInfo } from 'node:net';
import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ariCertId, renewalTime, renewalWindow, twoThirds } from '../../src/ca/acme/renewal.js';
import { acmeLib } from '../../src/ca/acme/lib.js';
import { tempDir } from '../helpers/pki.js';

// RFC 9773 section 4.1: authority key identifier 69:88:5B:6B:87:46:40:41:E1:B3:7B:84:7B:A0:AE:2C:DE:01:C8:D4,
// serial 00:87:65:43:21 → "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE".
const RFC_AKI = '69:88:5B:6B:87:46:40:41:E1:B3:7B:84:7B:A0:AE:2C:DE:01:C8:D4';
const RFC_ID = 'aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE';

let tmp: ReturnType<typeof tempDir>;
let leaf: string;
let server: https.Server;
let base: string;
let savedAgent: unknown;
let asked: string[] = [];

function openssl(args: string[]): void {
  execFileSync('openssl', args, { timeout: 30_000, stdio: ['ignore', 'ignore', 'pipe'] });
}

beforeAll(async () => {
  tmp = tempDir('ari');
  const f = (n: string) => path.join(tmp.dir, n);
  // An issuer whose subject key identifier is the RFC's, and a leaf with the RFC's serial.
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '2', '-subj', '/CN=ari test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign', '-addext', `subjectKeyIdentifier=${RFC_AKI}`,
    // No authority key identifier on the root: openssl would compute it from the key, unlike the chosen one, and the root would not look self-signed.
    '-addext', 'authorityKeyIdentifier=none']);
  openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', f('leaf.key'), '-out', f('leaf.csr'), '-subj', '/CN=calm-red-otter.pipe.test']);
  fs.writeFileSync(f('leaf.ext'), 'subjectAltName=DNS:calm-red-otter.pipe.test,IP:127.0.0.1\nauthorityKeyIdentifier=keyid\n');
  openssl(['x509', '-req', '-in', f('leaf.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-set_serial', '0x87654321', '-days', '1', '-extfile', f('leaf.ext'), '-out', f('leaf.pem')]);
  leaf = fs.readFileSync(f('leaf.pem'), 'utf8');

  // The stand-in CA directory (see the header), served with that same leaf.
  server = https.createServer({ key: fs.readFileSync(f('leaf.key')), cert: leaf }, (req, res) => {
    asked.push(req.url ?? '');
    const json = (code: number, body: unknown) => {
      res.writeHead(code, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (req.url === '/dir') return json(200, { newNonce: `${base}/nonce`, renewalInfo: `${base}/renewal-info` });
    if (req.url === '/dir-without-ari') return json(200, { newNonce: `${base}/nonce` });
    if (req.url === `/renewal-info/${RFC_ID}`) return json(200, { suggestedWindow: { start: '2027-01-03T00:00:00Z', end: '2027-01-04T00:00:00Z' }, explanationURL: 'https://ca.example/why' });
    if (req.url === '/broken/dir') return json(200, { renewalInfo: `${base}/broken/renewal-info` });
    if (req.url?.startsWith('/broken/renewal-info/')) return json(200, { suggestedWindow: { start: 'soon' } });
    json(404, { type: 'urn:ietf:params:acme:error:malformed' });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  // renewalWindow uses the agent the ACME client was configured with (its trust roots): trust exactly the test CA.
  const d = (await acmeLib()).axios.defaults as unknown as { httpsAgent?: unknown };
  savedAgent = d.httpsAgent;
  d.httpsAgent = new https.Agent({ ca: fs.readFileSync(f('ca.pem')) });
});

afterAll(async () => {
  ((await acmeLib()).axios.defaults as unknown as { httpsAgent?: unknown }).httpsAgent = savedAgent;
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  tmp?.cleanup();
});

describe('ACME renewal information (RFC 9773)', () => {
  it('the certificate identifier is the RFC\'s for the RFC\'s key identifier and serial', () => {
    expect(ariCertId(leaf)).toBe(RFC_ID);
  });

  it('the CA\'s suggested window is fetched for exactly that identifier', async () => {
    asked = [];
    const w = await renewalWindow(`${base}/dir`, leaf);
    expect(w).toEqual({ start: new Date('2027-01-03T00:00:00Z'), end: new Date('2027-01-04T00:00:00Z'), explanationUrl: 'https://ca.example/why' });
    expect(asked).toEqual(['/dir', `/renewal-info/${RFC_ID}`]);
  });

  it('no window when the directory has no renewalInfo, the answer is malformed, or the CA does not answer', async () => {
    expect(await renewalWindow(`${base}/dir-without-ari`, leaf)).toBeNull();
    expect(await renewalWindow(`${base}/broken/dir`, leaf)).toBeNull();
    expect(await renewalWindow(`${base}/missing`, leaf)).toBeNull();
    expect(await renewalWindow('https://127.0.0.1:1/dir', leaf, 2000)).toBeNull();
  });

  it('renewal falls inside the window, spread over it; without one, at two thirds of the lifetime', () => {
    const nb = new Date('2027-01-01T00:00:00Z');
    const na = new Date('2027-01-10T00:00:00Z');
    const w = { start: new Date('2027-01-03T00:00:00Z'), end: new Date('2027-01-04T00:00:00Z') };
    expect(renewalTime(nb, na, w, () => 0)).toEqual(w.start);
    expect(renewalTime(nb, na, w, () => 0.5)).toEqual(new Date('2027-01-03T12:00:00Z'));
    expect(renewalTime(nb, na, null)).toEqual(new Date('2027-01-07T00:00:00Z'));
    expect(twoThirds(nb, na)).toEqual(new Date('2027-01-07T00:00:00Z'));
    // A window that ends before it starts is no window.
    expect(renewalTime(nb, na, { start: w.end, end: w.start })).toEqual(twoThirds(nb, na));
  });
});
