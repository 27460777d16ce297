/**
 * Seeds COUNT subdomains (one https port and an ssh key each) into the store a pipe2me.yml names, spread
 * over the configuration's address slots, ports counted up within each slot from above the highest port in
 * use, numbered from START (0 for an empty fleet; the number already seeded for more). Run inside the world (the
 * relays' PostgreSQL is reachable only there): seeding, not what is measured.
 *
 *   vite-node bench/bin/seed-slots.ts CONFIG COUNT [START]
 */
import { loadConfig } from '../../src/config/load.js';
import { storeTargetOf } from '../../src/server/context.js';
import { newId } from '../../src/util/secrets.js';
import { randomEd25519Key } from '../../test/stack/seed.js';
import { seedRows, type SeedRows } from '../lib/seed.js';

const [configFile, countText, startText] = process.argv.slice(2);
const start = Number(startText ?? 0);
const c = loadConfig(configFile!);
const count = Number(countText);
const slots = c.relays.slots;
if (!Number.isInteger(count) || count < 1) throw new Error(`COUNT must be a positive integer, not ${countText}`);
const t0 = performance.now();
await seedRows(storeTargetOf(c), (maxPort) => {
  // Above every port in use in any slot (subdomains created between two seeds took the next free ones).
  const base = maxPort === null ? c.ports.first : maxPort + 1;
  if (base + Math.ceil(count / slots) - 1 > c.ports.last) throw new Error(`${count} more subdomains do not fit ${slots} slot(s) of ports ${base}-${c.ports.last}`);
  const rows: SeedRows = { subdomains: [], ports: [], ssh_keys: [] };
  for (let i = start; i < start + count; i++) {
    const id = newId();
    const name = `seed-${i}`;
    const slot = i % slots;
    rows.subdomains.push({ id, name, fqdn: `${name}.${c.domain}`, status: 'active', created_at: 1, slot });
    rows.ports.push({ slot, port: base + Math.floor((i - start) / slots), subdomain_id: id, protocol: 'https', position: 0 });
    const k = randomEd25519Key();
    rows.ssh_keys.push({ subdomain_id: id, algorithm: 'ssh-ed25519', public_key: k.publicKey, fingerprint: k.fingerprint, bits: 256, added_at: 1 });
  }
  return rows;
});
console.log(`seeded ${count} subdomains over ${slots} slot(s) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
