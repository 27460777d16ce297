import { describe, expect, it } from 'vitest';
import { renderAll, assertKeyLinesRestricted } from '../../src/render/render.js';
import { RenderRefusedError } from '../../src/render/templates.js';
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
    const s = sub('ok', ['http'], 20000);
    const own = /restrict, port-forwarding and exactly its own ports/;
    expect(() => assertKeyLinesRestricted(`ssh-ed25519 AAAA pipe2me:ok\n`, [{ name: 'ok', ports: [20000] }])).toThrow(own);
    expect(() => assertKeyLinesRestricted(`restrict,port-forwarding,command="exec /x ok" ssh-ed25519 AAAA\n`, [{ name: 'ok', ports: [20000] }])).toThrow(own);
    expect(() => assertKeyLinesRestricted(`restrict,port-forwarding,permitlisten="20000",permitlisten="20001",command="exec /x ok" ssh-ed25519 AAAA\n`, [{ name: 'ok', ports: [20000] }])).toThrow(own);
    expect(() => assertKeyLinesRestricted(`restrict,port-forwarding,permitlisten="20000" ssh-ed25519 AAAA\n`, [{ name: 'ok', ports: [20000] }])).toThrow(own);
    expect(() => assertKeyLinesRestricted(`restrict,port-forwarding,permitlisten="20000",command="exec /x other" ssh-ed25519 AAAA\n`, [{ name: 'ok', ports: [20000] }])).toThrow(/forced command/);
    expect(() => assertKeyLinesRestricted(`restrict,port-forwarding,permitlisten="20000",command="exec /x ok" ssh-ed25519 AAAA\n`, [{ name: 'ok', ports: [] }])).toThrow(own);
    assertKeyLinesRestricted(`restrict,port-forwarding,permitlisten="20000",command="exec /x ok" ssh-ed25519 AAAA\n`, [{ name: 'ok', ports: [20000] }]);
    // A published subdomain's key always gets exactly its ports.
    const [file] = renderAll(testConfig(), [s], ['keys']);
    expect(file!.content).toContain('permitlisten="20000",command=');
  });

  it('a subdomain without ports gets no key line at all', () => {
    const s = sub('ok', [], 20000);
    const [file] = renderAll(testConfig(), [s], ['keys']);
    expect(file!.content).not.toContain('ssh-ed25519');
  });

  it('an address that is not one is refused', () => {
    const s = sub('ok', ['http'], 20000, { route: 'direct', directIpv4: '1.2.3.4 ; evil' });
    expect(() => renderAll(testConfig(), [s], ['dns'])).toThrow(/is not a plain word/);
  });
});
