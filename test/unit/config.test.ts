import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadConfig, parseConfigText } from '../../src/config/load.js';
import { ConfigError } from '../../src/util/errors.js';

function errorOf(text: string): ConfigError {
  try {
    parseConfigText(text, 'pipe2me.yml');
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return e as ConfigError;
  }
  throw new Error('expected the configuration to be refused');
}

const base = 'domain: pipe.example.com\nserver:\n  ipv4: 198.51.100.10\n';

describe('configuration', () => {
  it('fills defaults and derived values', () => {
    const c = parseConfigText(base, 'pipe2me.yml');
    expect(c.server.fqdn).toBe('server.pipe.example.com');
    expect(c.dns.ttl).toBe(60);
    expect(c.dns.primary).toEqual({ name: 'ns1.pipe.example.com', ipv4: '198.51.100.10' });
    expect(c.ssh.ciphers[0]).toBe('aes128-gcm@openssh.com');
    expect(c.paths.state).toBe('/var/lib/pipe2me');
  });

  it('the example configuration in config/ is valid', () => {
    const c = loadConfig(path.join(import.meta.dirname, '..', '..', 'config', 'pipe2me.example.yml'));
    expect(c.domain).toBe('pipe.example.com');
    expect(c.dns.secondaries.length).toBeGreaterThan(0);
  });

  it('an unknown key is an error that suggests the right one', () => {
    const e = errorOf(base + 'dns:\n  tll: 30\n');
    expect(e.message).toContain('unknown key "dns.tll" — did you mean "dns.ttl"?');
  });

  it('a wrong value names the key, what was given and how to fix it', () => {
    const e = errorOf(base + 'dns:\n  ttl: 3600\n');
    expect(e.message).toContain('"dns.ttl" must be <= 300 (got 3600)');
    expect(e.message).toMatch(/TTL in seconds/);
    expect(errorOf(base + 'dns:\n  daemon: unbound\n').message).toContain('"dns.daemon" must be one of "bind", "nsd" (got "unbound")');
    expect(errorOf('domain: pipe.example.com\nserver:\n  ipv4: 300.1.1.1\n').message).toContain('"server.ipv4" is not valid (got "300.1.1.1")');
    expect(errorOf(base + 'dns:\n  secondaries:\n    - name: ns2.example.net\n').message).toContain('missing key "dns.secondaries[0].ipv4"');
  });

  it('reports every problem at once, and cross-field ones too', () => {
    const e = errorOf(base + 'ports:\n  first: 30000\n  last: 20000\n');
    expect(e.message).toContain('"ports.last" (20000) is below "ports.first" (30000)');
    const many = errorOf('domain: "bad domain"\nserver:\n  ipv4: x\nfoo: 1\n');
    expect(many.message).toContain('"domain" is not valid');
    expect(many.message).toContain('"server.ipv4" is not valid');
    expect(many.message).toContain('unknown key "foo"');
  });

  it('a YAML syntax error gives the line', () => {
    expect(errorOf('domain: [\n').message).toMatch(/not valid YAML at line \d+/);
    expect(errorOf('').message).toMatch(/is empty/);
    expect(errorOf('- a\n- b\n').message).toMatch(/not a list/);
  });

  it('a missing file says how to create one', () => {
    expect(() => loadConfig('/nonexistent/pipe2me.yml')).toThrow(/No configuration at/);
    try {
      loadConfig('/nonexistent/pipe2me.yml');
    } catch (e) {
      expect((e as ConfigError).hint).toMatch(/pipe2me-ctl init/);
    }
  });

  it('paths with spaces or quotes are refused before any renderer sees them', () => {
    expect(errorOf(base + 'paths:\n  sshd: "/etc/pipe 2me"\n').message).toContain('"paths.sshd" is not valid');
    expect(fs.existsSync('/etc/pipe 2me')).toBe(false);
  });
});

describe('the generated validator', () => {
  it('is what the schema compiles to today (run `npm run generate` after changing the schema)', async () => {
    const { generateValidatorSource } = await import('../../src/config/validator.js');
    const schema = JSON.parse(fs.readFileSync(path.join(import.meta.dirname, '..', '..', 'config', 'pipe2me.schema.json'), 'utf8'));
    const current = fs.readFileSync(path.join(import.meta.dirname, '..', '..', 'src', 'config', 'validate.generated.js'), 'utf8');
    expect(current).toBe(generateValidatorSource(schema));
  });

  it('refuses what the formats refuse', () => {
    const bad = (doc: string) => expect(() => parseConfigText(doc, 'x.yml')).toThrow(ConfigError);
    bad('domain: pipe.example.com\nserver:\n  ipv4: 1.2.3\n');
    bad('domain: pipe.example.com\nserver:\n  ipv4: 1.2.3.4\n  ipv6: "not-v6"\n');
    bad('domain: nodots\nserver:\n  ipv4: 1.2.3.4\n');
    bad('domain: pipe.example.com\nserver:\n  ipv4: 1.2.3.4\npaths:\n  state: /var/../etc\n');
    bad('domain: pipe.example.com\nserver:\n  ipv4: 1.2.3.4\npaths:\n  state: relative/path\n');
    expect(parseConfigText('domain: pipe.example.com\nserver:\n  ipv4: 1.2.3.4\n  ipv6: 2001:db8::1\ndns:\n  secondaries:\n    - {name: ns2.example.net., ipv4: 192.0.2.1}\n', 'x.yml').dns.secondaries[0]!.name).toBe('ns2.example.net');
  });
});

describe('the public port range and the ephemeral range', () => {
  it('warns when they overlap, and not otherwise', async () => {
    const { ephemeralOverlap } = await import('../../src/server/init.js');
    expect(ephemeralOverlap(20000, 29999, '32768\t60999\n')).toBeUndefined();
    expect(ephemeralOverlap(20000, 40000, '32768\t60999\n')).toMatch(/overlaps this machine's ephemeral port range 32768-60999: reserve it \(sysctl net\.ipv4\.ip_local_reserved_ports=20000-40000\)/);
    expect(ephemeralOverlap(61000, 62000, '32768 60999')).toBeUndefined();
    expect(ephemeralOverlap(1, 2, undefined)).toBeUndefined();
  });
});

describe('relays with address slots', () => {
  const relays = (a: string, b: string) => `domain: pipe.example.com\nserver: {}\nrelay: relay-a\nrelays:\n  - {name: relay-a, ${a}}\n  - {name: relay-b, ${b}}\n`;

  it('a list of IPv4 addresses per relay is its slots; the first is the relay\'s own address', () => {
    const c = parseConfigText(relays('ipv4: [198.51.100.10, 198.51.100.11], ipv6: [2001:db8::10, 2001:db8::11]', 'ipv4: [198.51.100.20, 198.51.100.21]'), 'x.yml');
    expect(c.relays.slots).toBe(2);
    expect(c.relays.list[0]!.slots).toEqual([{ ipv4: '198.51.100.10', ipv6: '2001:db8::10' }, { ipv4: '198.51.100.11', ipv6: '2001:db8::11' }]);
    expect(c.relays.list[1]!.slots).toEqual([{ ipv4: '198.51.100.20', ipv6: null }, { ipv4: '198.51.100.21', ipv6: null }]);
    expect(c.server.ipv4).toBe('198.51.100.10');
    // One address each: one slot, as before.
    expect(parseConfigText(relays('ipv4: 198.51.100.10', 'ipv4: 198.51.100.20'), 'x.yml').relays.slots).toBe(1);
    expect(parseConfigText(base, 'x.yml').relays.slots).toBe(1);
  });

  it('refuses different numbers of slots, an IPv6 list of another length, and an address given twice, naming each', () => {
    expect(errorOf(relays('ipv4: [198.51.100.10, 198.51.100.11]', 'ipv4: 198.51.100.20')).message).toMatch(/different numbers of IPv4 addresses \(relay-a: 2, relay-b: 1\)/);
    expect(errorOf(relays('ipv4: [198.51.100.10, 198.51.100.11], ipv6: 2001:db8::10', 'ipv4: [198.51.100.20, 198.51.100.21]')).message).toMatch(/relay-a: ipv6 has 1 address\(es\) and ipv4 2/);
    expect(errorOf(relays('ipv4: [198.51.100.10, 198.51.100.10]', 'ipv4: [198.51.100.20, 198.51.100.21]')).message).toMatch(/relay-a lists the address 198\.51\.100\.10 twice/);
    expect(errorOf(relays('ipv4: [198.51.100.10, 198.51.100.21]', 'ipv4: [198.51.100.20, 198.51.100.21]')).message).toMatch(/relay-a and relay-b both have the address 198\.51\.100\.21/);
    // IPv6 in one spelling: two spellings of one address are one address; loopback and 0.0.0.0 are no relay's.
    const v6 = parseConfigText(relays('ipv4: [198.51.100.10, 198.51.100.11], ipv6: [2001:DB8:0::10, 2001:db8::11]', 'ipv4: [198.51.100.20, 198.51.100.21]'), 'x.yml');
    expect(v6.relays.list[0]!.slots[0]!.ipv6).toBe('2001:db8::10');
    expect(errorOf(relays('ipv4: [198.51.100.10, 198.51.100.11], ipv6: [2001:db8::10, 2001:DB8:0:0::10]', 'ipv4: [198.51.100.20, 198.51.100.21]')).message).toMatch(/lists the address 2001:db8::10 twice/);
    expect(errorOf(relays('ipv4: [198.51.100.10, 0.0.0.0]', 'ipv4: [198.51.100.20, 127.0.0.2]')).message).toMatch(/0\.0\.0\.0 is not a public address[\s\S]*127\.0\.0\.2 is not a public address/);
  });
});
