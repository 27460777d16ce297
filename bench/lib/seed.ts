/** Fleets for the benchmarks, written straight into the state store: seeding, not what is measured. */
import type { Stack } from '../../test/stack/stack.js';
import { openDb, writeTx } from '../../src/state/db.js';
import { newId } from '../../src/util/secrets.js';
import { randomEd25519Key } from '../../test/stack/seed.js';

/** Adds subdomains straight into the state (one https service each, with a key): seeding, not what is measured. */
export function seedSubdomains(stack: Stack, count: number, startIndex: number): void {
  const db = openDb(stack.layout.stateDir);
  try {
    writeTx(db, () => {
      const maxPort = (db.prepare('SELECT MAX(port) FROM ports').pluck().get() as number | null) ?? stack.config.ports.first - 1;
      const sub = db.prepare("INSERT INTO subdomains (id, name, fqdn, status, created_at) VALUES (?, ?, ?, 'active', ?)");
      const port = db.prepare('INSERT INTO ports (port, subdomain_id, protocol, position) VALUES (?, ?, ?, ?)');
      const key = db.prepare('INSERT INTO ssh_keys (subdomain_id, algorithm, public_key, fingerprint, bits, added_at) VALUES (?, ?, ?, ?, ?, ?)');
      let p = maxPort + 1;
      for (let i = 0; i < count; i++) {
        const id = newId();
        const name = `seed-${startIndex + i}`;
        sub.run(id, name, `${name}.${stack.config.domain}`, 1);
        port.run(p++, id, 'https', 0);
        const k = randomEd25519Key();
        key.run(id, 'ssh-ed25519', k.publicKey, k.fingerprint, 256, 1);
      }
    });
  } finally {
    db.close();
  }
}

