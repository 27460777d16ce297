/**
 * Pure CSR checking. Every request here is made by the real `openssl req` (the way a pod makes it);
 * the only hand-made inputs are damaged copies of those.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CsrErrorCode } from '../../src/ca/codes.js';
import { checkCsr, MAX_CSR_BYTES } from '../../src/ca/csr.js';
import { pemBlocks, toPem } from '../../src/ca/asn1.js';
import { isPipe2meError } from '../../src/util/errors.js';
import { makeCsr, makeKey, tempDir, type KeySpec } from '../helpers/pki.js';

const FQDN = 'calm-red-otter.pipe.example.com';

let tmp: ReturnType<typeof tempDir>;
const keys: Partial<Record<KeySpec, string>> = {};
const csr: Record<string, string> = {};

/** Run `fn` and return the error's code; fails the test if nothing was thrown or the error is untyped. */
function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (!isPipe2meError(e)) throw e;
    // Messages must stay short whatever the input was.
    expect(e.message.length).toBeLessThan(400);
    return e.code;
  }
  throw new Error('expected a refusal, but the CSR was accepted');
}

function messageOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    return (e as Error).message;
  }
  throw new Error('expected a refusal');
}

function derOf(pem: string): Buffer {
  return pemBlocks(pem)[0]!.der;
}

/** Replace the first occurrence of `from` in the DER with `to` (same length), keeping the signature. */
function tamper(pem: string, from: string, to: string): string {
  const der = Buffer.from(derOf(pem));
  const at = der.indexOf(Buffer.from(from, 'latin1'));
  expect(at).toBeGreaterThan(0);
  Buffer.from(to, 'latin1').copy(der, at);
  return toPem('CERTIFICATE REQUEST', der);
}

beforeAll(async () => {
  tmp = tempDir('csr');
  const specs: KeySpec[] = ['p256', 'p384', 'p521', 'secp256k1', 'rsa1024', 'rsa2048', 'rsapss2048', 'ed25519', 'dsa'];
  await Promise.all(specs.map(async (s) => (keys[s] = await makeKey(tmp.dir, s, s))));
  const k = keys as Record<KeySpec, string>;
  const cn = `/CN=${FQDN}`;
  const jobs: Record<string, Parameters<typeof makeCsr>[2]> = {
    goodEc: { key: k.p256, subj: cn, addext: [`subjectAltName=DNS:${FQDN}`] },
    goodEcNoSan: { key: k.p256, subj: cn },
    goodP384: { key: k.p384, subj: cn },
    goodRsa: { key: k.rsa2048, subj: cn, addext: [`subjectAltName=DNS:${FQDN}`] },
    upperCn: { key: k.p256, subj: `/CN=${FQDN.toUpperCase()}`, addext: [`subjectAltName=DNS:${FQDN.toUpperCase()}`] },
    extraSubjectAndExt: { key: k.p256, subj: `/O=Evil Corp/CN=${FQDN}/emailAddress=a@example.com`, addext: ['basicConstraints=critical,CA:true', 'keyUsage=keyCertSign'] },
    otherCn: { key: k.p256, subj: '/CN=www.bank.example' },
    noCn: { key: k.p256, subj: '/O=no common name' },
    twoCn: { key: k.p256, subj: `/CN=${FQDN}/CN=other.pipe.example.com` },
    sanOther: { key: k.p256, subj: cn, addext: [`subjectAltName=DNS:${FQDN},DNS:other.pipe.example.com`] },
    sanWildcard: { key: k.p256, subj: cn, addext: [`subjectAltName=DNS:*.pipe.example.com`] },
    sanIp: { key: k.p256, subj: cn, addext: [`subjectAltName=DNS:${FQDN},IP:192.0.2.7`] },
    sanEmail: { key: k.p256, subj: cn, addext: [`subjectAltName=email:admin@${FQDN}`] },
    sanUri: { key: k.p256, subj: cn, addext: [`subjectAltName=URI:https://${FQDN}/`] },
    rsa1024: { key: k.rsa1024, subj: cn },
    p521: { key: k.p521, subj: cn },
    secp256k1: { key: k.secp256k1, subj: cn },
    ed25519: { key: k.ed25519, subj: cn },
    dsa: { key: k.dsa, subj: cn, digest: '-sha256' },
    rsaPss: { key: k.rsapss2048, subj: cn },
    sha1: { key: k.p256, subj: cn, digest: '-sha1' },
  };
  await Promise.all(Object.entries(jobs).map(async ([name, spec]) => (csr[name] = await makeCsr(tmp.dir, name, spec))));
});

afterAll(() => tmp?.cleanup());

describe('checkCsr accepts what a pod should send', () => {
  it('EC P-256 with SAN = fqdn', () => {
    const r = checkCsr(csr.goodEc!, FQDN);
    expect(r.fqdn).toBe(FQDN);
    expect(r.key).toMatchObject({ type: 'ec', curve: 'P-256' });
    expect(r.signatureAlgorithm).toBe('ecdsa-with-SHA256');
    expect(r.requestedDnsNames).toEqual([FQDN]);
    expect(r.pem).toMatch(/^-----BEGIN CERTIFICATE REQUEST-----\n/);
  });

  it('EC P-256 without any SAN (the certificate gets DNS:fqdn anyway)', () => {
    expect(checkCsr(csr.goodEcNoSan!, FQDN).requestedDnsNames).toEqual([]);
  });

  it('EC P-384', () => {
    expect(checkCsr(csr.goodP384!, FQDN).key.curve).toBe('P-384');
  });

  it('RSA 2048', () => {
    expect(checkCsr(csr.goodRsa!, FQDN).key).toMatchObject({ type: 'rsa', bits: 2048 });
  });

  it('compares names without regard to case, and takes the fqdn in any case', () => {
    expect(checkCsr(csr.upperCn!, FQDN).fqdn).toBe(FQDN);
    expect(checkCsr(csr.goodEc!, FQDN.toUpperCase()).fqdn).toBe(FQDN);
  });

  it('takes DER bytes and PEM with explanatory text around it', () => {
    expect(checkCsr(derOf(csr.goodEc!), FQDN).fqdn).toBe(FQDN);
    expect(checkCsr(`Certificate request for ${FQDN}\n\n${csr.goodEc!}\n-- end\n`, FQDN).fqdn).toBe(FQDN);
  });

  it('accepts other subject fields and extensions but reports them as ignored (the CA never copies them)', () => {
    const r = checkCsr(csr.extraSubjectAndExt!, FQDN);
    expect(r.ignoredExtensions).toEqual(['2.5.29.19', '2.5.29.15']);
  });

  it('policy is configurable: P-521 allowed when asked for, RSA 2048 refused when 3072 is the minimum', () => {
    expect(checkCsr(csr.p521!, FQDN, { allowedCurves: ['P-256', 'P-521'], minRsaBits: 2048, maxBytes: MAX_CSR_BYTES }).key.curve).toBe('P-521');
    expect(codeOf(() => checkCsr(csr.goodRsa!, FQDN, { allowedCurves: ['P-256'], minRsaBits: 3072, maxBytes: MAX_CSR_BYTES }))).toBe(
      CsrErrorCode.rsaKeyTooSmall,
    );
  });
});

describe('checkCsr refuses, each case with its own code', () => {
  const seen = new Set<string>();
  const refused = (name: string, fn: () => unknown, code: string) =>
    it(`${name} → ${code}`, () => {
      expect(codeOf(fn)).toBe(code);
      seen.add(code);
    });

  refused('more than 16 KiB', () => checkCsr(csr.goodEc! + '\n' + 'x'.repeat(MAX_CSR_BYTES), FQDN), CsrErrorCode.tooLarge);
  refused('plain text', () => checkCsr('hello, please sign me', FQDN), CsrErrorCode.notPem);
  refused('an empty string', () => checkCsr('', FQDN), CsrErrorCode.notPem);
  refused('a certificate instead of a request', () => checkCsr(csr.goodEc!.replace(/CERTIFICATE REQUEST/g, 'CERTIFICATE'), FQDN), CsrErrorCode.notPem);
  refused('two requests at once', () => checkCsr(csr.goodEc! + csr.goodEcNoSan!, FQDN), CsrErrorCode.notPem);
  refused('a private key pasted with the request', () => checkCsr(readFileSync(keys.p256!, 'utf8') + csr.goodEc!, FQDN), CsrErrorCode.containsPrivateKey);
  refused('broken base64 inside the markers', () => checkCsr(csr.goodEc!.replace(/\n[A-Za-z0-9+/]{10}/, '\n!!!!!!!!!!'), FQDN), CsrErrorCode.malformed);
  refused('valid base64 of garbage', () => checkCsr(toPem('CERTIFICATE REQUEST', Buffer.from('this is not DER at all')), FQDN), CsrErrorCode.malformed);
  refused('a truncated request', () => checkCsr(toPem('CERTIFICATE REQUEST', derOf(csr.goodEc!).subarray(0, 100)), FQDN), CsrErrorCode.malformed);
  refused('trailing bytes after the request', () => checkCsr(toPem('CERTIFICATE REQUEST', Buffer.concat([derOf(csr.goodEc!), Buffer.from([0, 0])])), FQDN), CsrErrorCode.malformed);
  refused('CN changed after signing', () => checkCsr(tamper(csr.goodEcNoSan!, 'calm-red', 'calm-rod'), FQDN.replace('calm-red', 'calm-rod')), CsrErrorCode.signatureInvalid);
  refused(
    'signature bytes flipped',
    () => {
      const der = Buffer.from(derOf(csr.goodRsa!));
      der[der.length - 5]! ^= 0xff;
      return checkCsr(toPem('CERTIFICATE REQUEST', der), FQDN);
    },
    CsrErrorCode.signatureInvalid,
  );
  refused('signed with SHA-1', () => checkCsr(csr.sha1!, FQDN), CsrErrorCode.signatureAlgorithmNotAllowed);
  refused('CN of another name', () => checkCsr(csr.otherCn!, FQDN), CsrErrorCode.cnMismatch);
  refused('no CN', () => checkCsr(csr.noCn!, FQDN), CsrErrorCode.cnMismatch);
  refused('two CNs', () => checkCsr(csr.twoCn!, FQDN), CsrErrorCode.cnMismatch);
  refused('SAN with a second DNS name', () => checkCsr(csr.sanOther!, FQDN), CsrErrorCode.sanNameMismatch);
  refused('SAN with a wildcard', () => checkCsr(csr.sanWildcard!, FQDN), CsrErrorCode.sanNameMismatch);
  refused('SAN with an IP address', () => checkCsr(csr.sanIp!, FQDN), CsrErrorCode.sanTypeNotAllowed);
  refused('SAN with an email address', () => checkCsr(csr.sanEmail!, FQDN), CsrErrorCode.sanTypeNotAllowed);
  refused('SAN with a URI', () => checkCsr(csr.sanUri!, FQDN), CsrErrorCode.sanTypeNotAllowed);
  refused('RSA 1024', () => checkCsr(csr.rsa1024!, FQDN), CsrErrorCode.rsaKeyTooSmall);
  refused('EC P-521 (not on the default list)', () => checkCsr(csr.p521!, FQDN), CsrErrorCode.curveNotAllowed);
  refused('EC secp256k1', () => checkCsr(csr.secp256k1!, FQDN), CsrErrorCode.curveNotAllowed);
  refused('Ed25519', () => checkCsr(csr.ed25519!, FQDN), CsrErrorCode.keyTypeNotAllowed);
  refused('DSA', () => checkCsr(csr.dsa!, FQDN), CsrErrorCode.keyTypeNotAllowed);
  refused('RSA-PSS-only key', () => checkCsr(csr.rsaPss!, FQDN), CsrErrorCode.keyTypeNotAllowed);
  refused('an fqdn that is not a host name', () => checkCsr(csr.goodEc!, 'not a name'), 'invalid_fqdn');

  it('every CSR error code has a case above', () => {
    expect([...seen].sort()).toEqual([...Object.values(CsrErrorCode), 'invalid_fqdn'].sort());
  });
});

describe('refusal messages', () => {
  it('say what the CN was and what it must be', () => {
    const m = messageOf(() => checkCsr(csr.otherCn!, FQDN));
    expect(m).toContain('"www.bank.example"');
    expect(m).toContain(FQDN);
  });

  it('name the refused SAN entry', () => {
    expect(messageOf(() => checkCsr(csr.sanIp!, FQDN))).toContain('IP address "192.0.2.7"');
    expect(messageOf(() => checkCsr(csr.sanOther!, FQDN))).toContain('"other.pipe.example.com"');
  });

  it('explain key problems', () => {
    expect(messageOf(() => checkCsr(csr.rsa1024!, FQDN))).toContain('1024 bits');
    expect(messageOf(() => checkCsr(csr.p521!, FQDN))).toContain('P-521');
    expect(messageOf(() => checkCsr(csr.ed25519!, FQDN))).toMatch(/ed25519 keys are not accepted by browsers/);
  });

  it('never repeat the input: not a huge one, and never a private key', () => {
    const huge = 'A'.repeat(MAX_CSR_BYTES * 4);
    expect(messageOf(() => checkCsr(huge, FQDN))).not.toContain('AAAAAAAAAA');
    const key = readFileSync(keys.p256!, 'utf8');
    const body = key.split('\n')[1]!;
    try {
      checkCsr(key + csr.goodEc!, FQDN);
    } catch (e) {
      expect(JSON.stringify({ m: (e as Error).message, d: (e as { data?: unknown }).data })).not.toContain(body.slice(0, 20));
    }
  });
});
