/**
 * Rendered files for 0, 1 and 500 subdomains pass the real checkers (sshd -t, ssh-keygen -l on
 * authorized_keys, nginx -t, named-checkconf + named-checkzone, nsd-checkconf + nsd-checkzone): the state is
 * seeded directly, then `pipe2me-ctl apply` renders and checks inside the server's namespace (nginx -t binds
 * the server's address).
 */
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Stack } from '../stack/stack.js';
import { openStore } from '../../src/state/db.js';
import { storeTargetOf } from '../../src/server/context.js';
import { createSubdomain, setSshKey } from '../../src/state/subdomains.js';
import { parsePublicKey } from '../../src/ssh/pubkey.js';
import { randomEd25519 } from '../stack/seed.js';


describe.each(['bind', 'nsd'] as const)('checkers accept what pipe2me renders (%s)', (dns) => {
  let stack: Stack | undefined;
  beforeAll(async () => {
    stack = await Stack.create({ dns, upnp: false });
    await stack.startServer();
  }, 180_000);
  afterAll(async () => {
    await stack?.destroy();
  });

  async function seed(count: number) {
    const c = stack!.config;
    const db = await openStore(storeTargetOf(c));
    try {
      for (let i = 0; i < count; i++) {
        const { record } = await createSubdomain(db, { protocols: i % 3 === 0 ? ['http', 'https', 'tcp'] : ['https'], expiresAt: null, passthrough: i % 5 === 0 }, {
          domain: c.domain, range: { first: c.ports.first, last: c.ports.last }, maxPorts: 16, reserved: ['server'],
        });
        await setSshKey(db, record.id, parsePublicKey(randomEd25519()));
      }
    } finally {
      await db.close();
    }
  }

  for (const [total, add] of [[0, 0], [1, 1], [500, 499]] as const) {
    it(`${total} subdomain(s): apply renders, every checker accepts, and a second apply changes nothing`, async () => {
      await seed(add);
      const r = await stack!.ctl<{ changed_units: string[]; files: { path: string }[] }>(['apply'], { timeout: 180_000 });
      expect(r.exitCode).toBe(0);
      const keys = fs.readFileSync(stack!.layout.sshd.keyList, 'utf8').split('\n').filter((l) => l.split(' ')[1]?.startsWith('restrict,'));
      expect(keys).toHaveLength(total);
      // The index sshd's key lookup reads: one file per key, each holding exactly its line.
      expect(fs.readdirSync(stack!.layout.sshd.keysDir).filter((f) => !f.startsWith('.')).sort()).toEqual(keys.map((l) => l.split(' ')[0]!).sort());
      // One line per pod with an https entry: its label, then "SCHEME:PORT https:PORT".
      const map = fs.readFileSync(stack!.layout.nginx.entryMap, 'utf8').split('\n').filter((l) => !l.startsWith('#') && / https:[0-9]+";$/.test(l));
      expect(map).toHaveLength(total);
      const zone = fs.readFileSync(dns === 'bind' ? stack!.layout.bind.zone : stack!.layout.nsd.zone, 'utf8');
      expect(zone.split('\n').filter((l) => / IN A 203\.0\.113\.1$/.test(l))).toHaveLength(total + 3); // + ns1's glue, the apex and the server's own name
      const again = await stack!.ctl<{ changed_units: string[] }>(['apply']);
      expect(again.json.changed_units).toEqual([]);
    }, 240_000);
  }
});
