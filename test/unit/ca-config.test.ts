/**
 * Pure parts of the CA: the rendered openssl config (and what it refuses to render), and reading
 * openssl's index.txt.
 */
import { describe, expect, it } from 'vitest';
import { renderLeafExtensions, renderOpensslCnf, type CaSettings } from '../../src/ca/config.js';
import { IndexFormatError, parseIndex } from '../../src/ca/index-db.js';
import { isPipe2meError } from '../../src/util/errors.js';

const S: CaSettings = { dir: '/var/lib/pipe2me/ca', crlUrl: 'http://ca.pipe.example.com/crl.pem', crlDays: 30, defaultDays: 90, restrictToDomain: null };

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (isPipe2meError(e)) return e.code;
    throw e;
  }
  throw new Error('expected a refusal');
}

/** The lines of one [ section ], without comments and blank lines. */
function section(cnf: string, name: string): string[] {
  const start = cnf.indexOf(`[ ${name} ]`);
  expect(start).toBeGreaterThanOrEqual(0);
  const rest = cnf.slice(start).split('\n').slice(1);
  const end = rest.findIndex((l) => l.startsWith('['));
  return rest.slice(0, end < 0 ? undefined : end).filter((l) => l.trim() && !l.trim().startsWith('#')).map((l) => l.replace(/\s+/g, ' ').trim());
}

describe('openssl.cnf', () => {
  const cnf = renderOpensslCnf(S);

  it('never copies extensions from a request, allows renewals, keeps only the CN', () => {
    const ca = section(cnf, 'pipe2me_ca');
    expect(ca).toContain('copy_extensions = none');
    expect(ca).toContain('unique_subject = no');
    expect(ca).toContain('default_md = sha256');
    expect(ca).toContain('dir = /var/lib/pipe2me/ca');
    expect(ca).toContain('database = $dir/index.txt');
    expect(ca).toContain('crlnumber = $dir/crlnumber');
    expect(section(cnf, 'pipe2me_policy')).toEqual(['commonName = supplied']);
  });

  it('root: CA:true and keyCertSign/cRLSign, both critical; a name constraint only when asked for', () => {
    const root = section(cnf, 'pipe2me_root');
    expect(root).toContain('basicConstraints = critical, CA:true');
    expect(root).toContain('keyUsage = critical, keyCertSign, cRLSign');
    expect(root.some((l) => l.startsWith('nameConstraints'))).toBe(false);
    expect(section(renderOpensslCnf({ ...S, restrictToDomain: 'Pipe.Example.com' }), 'pipe2me_root')).toContain(
      'nameConstraints = critical, permitted;DNS:pipe.example.com, permitted;email:pipe.example.com, permitted;email:.pipe.example.com, permitted;URI:pipe.example.com, permitted;URI:.pipe.example.com, excluded;IP:0.0.0.0/0.0.0.0, excluded;IP:0:0:0:0:0:0:0:0/0:0:0:0:0:0:0:0',
    );
  });

  it('the leaf section in openssl.cnf has no SAN; each signing gets one with exactly its names', () => {
    expect(section(cnf, 'pipe2me_leaf').some((l) => l.startsWith('subjectAltName'))).toBe(false);
    const ec = section(renderLeafExtensions(S, { names: ['calm-red-otter.pipe.example.com'], rsa: false }), 'pipe2me_leaf');
    expect(ec).toEqual([
      'basicConstraints = critical, CA:false',
      'keyUsage = critical, digitalSignature',
      'extendedKeyUsage = serverAuth',
      'subjectKeyIdentifier = hash',
      'authorityKeyIdentifier = keyid:always',
      'subjectAltName = DNS:calm-red-otter.pipe.example.com',
      'crlDistributionPoints = URI:http://ca.pipe.example.com/crl.pem',
    ]);
    const rsa = section(renderLeafExtensions({ ...S, crlUrl: null }, { names: ['a.example.com', '*.example.com'], rsa: true }), 'pipe2me_leaf');
    expect(rsa).toContain('keyUsage = critical, digitalSignature, keyEncipherment');
    expect(rsa).toContain('subjectAltName = DNS:a.example.com, DNS:*.example.com');
    expect(rsa.some((l) => l.startsWith('crlDistributionPoints'))).toBe(false);
  });

  it('refuses values that could change the meaning of the file', () => {
    const bad: Partial<CaSettings>[] = [
      { dir: '/var/lib/pipe2me/ca\ncopy_extensions = copy' },
      { dir: '/var/lib/pipe 2me' },
      { dir: '/var/lib/$HOME' },
      { dir: 'relative/ca' },
      { dir: '/var/lib/../../etc' },
      { crlUrl: 'http://ca.example.com/crl.pem\nbasicConstraints = CA:true' },
      { crlUrl: 'http://ca.example.com/crl.pem, URI:http://evil.example/' },
      { crlUrl: 'http://ca.example.com/#x' },
      { crlUrl: 'http://ca.example.com/"x' },
      { crlUrl: 'ftp://ca.example.com/crl' },
      { restrictToDomain: 'example.com\nx = y' },
    ];
    for (const b of bad) {
      expect(codeOf(() => renderOpensslCnf({ ...S, ...b })), JSON.stringify(b)).toMatch(/^(ca_config_value_invalid|invalid_fqdn)$/);
    }
    expect(codeOf(() => renderOpensslCnf({ ...S, crlDays: 0 }))).toBe('ca_days_invalid');
    expect(codeOf(() => renderOpensslCnf({ ...S, defaultDays: 1.5 }))).toBe('ca_days_invalid');
  });

  it('refuses names that would smuggle a second SAN entry or a new line', () => {
    for (const n of ['a.example.com, DNS:evil.example', 'a.example.com\nbasicConstraints = CA:true', 'a.example.com,IP:1.2.3.4', '', 'localhost', '1.2.3.4']) {
      expect(codeOf(() => renderLeafExtensions(S, { names: [n], rsa: false })), JSON.stringify(n)).toBe('invalid_fqdn');
    }
    expect(codeOf(() => renderLeafExtensions(S, { names: [], rsa: false }))).toBe('ca_config_value_invalid');
  });
});

describe('index.txt', () => {
  const now = new Date('2026-06-01T00:00:00Z');
  const text = [
    'V\t270101000000Z\t\t1000\tunknown\t/CN=a.pipe.example.com',
    'R\t270101000000Z\t260301120000Z,keyCompromise\t1001\tunknown\t/CN=b.pipe.example.com',
    'V\t260101000000Z\t\t1002\tunknown\t/CN=c.pipe.example.com',
    'V\t20510101000000Z\t\t0A\tunknown\t/CN=d.pipe.example.com',
    '',
  ].join('\n');

  it('reads status, dates, reason and CN; reports an expired V as E', () => {
    const e = parseIndex(text, now);
    expect(e.map((x) => [x.serial, x.status, x.commonName])).toEqual([
      ['1000', 'V', 'a.pipe.example.com'],
      ['1001', 'R', 'b.pipe.example.com'],
      ['1002', 'E', 'c.pipe.example.com'],
      ['0A', 'V', 'd.pipe.example.com'],
    ]);
    expect(e[1]).toMatchObject({ revokedAt: new Date('2026-03-01T12:00:00Z'), revocationReason: 'keyCompromise' });
    expect(e[0]!.expires).toEqual(new Date('2027-01-01T00:00:00Z'));
    expect(e[3]!.expires).toEqual(new Date('2051-01-01T00:00:00Z'));
  });

  it('says which line is damaged', () => {
    expect(() => parseIndex('V\t270101000000Z\t\t1000\tunknown', now)).toThrow(IndexFormatError);
    expect(() => parseIndex(text + 'X\t270101000000Z\t\t1000\tunknown\t/CN=x\n', now)).toThrow(/line 5/);
  });
});
