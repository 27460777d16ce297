/**
 * Simulated pods for the relays' failover benchmark: seeds COUNT subdomains (one http port and an ssh key
 * each) into the shared store a relay's pipe2me.yml names, and writes each pod's directory as `pipe2me
 * setup` leaves it — its key (0600), the relays' pinned host keys and the wrapper's relay list copied from
 * a real pod of the same fleet, its state — plus pipe2me's ssh wrapper, and a manifest for
 * fleet-pods.mjs that runs every pod as `pipe2me start` runs its tunnel (autossh, tunnelArgv, tunnelEnv).
 * Run inside the world (the relays' PostgreSQL is reachable only there): seeding, not what is measured.
 *
 *   vite-node bench/bin/seed-relay-pods.ts CONFIG COUNT TEMPLATE_POD_DIR OUT_DIR LOCAL_PORT
 *
 * Prints one JSON line: {"manifest": FILE, "pods": [{"name", "fqdn", "port"}…]}.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadConfig } from '../../src/config/load.js';
import { storeTargetOf } from '../../src/server/context.js';
import { newId } from '../../src/util/secrets.js';
import { PodFiles } from '../../src/pod/files.js';
import { relaysFileText } from '../../src/pod/relays.js';
import { sshWrapperScript, tunnelArgv, tunnelEnv } from '../../src/pod/tunnel.js';
import { seedRows, type SeedRows } from '../lib/seed.js';
import { newPodKey } from '../lib/pod-key.js';

const [configFile, countText, templateDir, outDir, localPortText] = process.argv.slice(2);
const c = loadConfig(configFile!);
const count = Number(countText);
const localPort = Number(localPortText);
if (!Number.isInteger(count) || count < 1) throw new Error(`COUNT must be a positive integer, not ${countText}`);
const template = new PodFiles(templateDir!);
const base = template.read();
if (!base.relays?.length) throw new Error(`the template pod ${templateDir} knows no relays`);
const knownHosts = fs.readFileSync(template.knownHosts, 'utf8');
fs.mkdirSync(outDir!, { recursive: true, mode: 0o700 });
const pods: { name: string; fqdn: string; port: number }[] = [];
const entries: { index: number; argv: string[]; env: Record<string, string>; state: string; next: string }[] = [];
await seedRows(storeTargetOf(c), (maxPort) => {
  let port = (maxPort ?? c.ports.first - 1) + 1;
  if (port + count - 1 > c.ports.last) throw new Error(`${count} more subdomains do not fit ports ${port}-${c.ports.last}`);
  const rows: SeedRows = { subdomains: [], ports: [], ssh_keys: [] };
  for (let i = 0; i < count; i++) {
    const id = newId();
    const name = `fo-${i}`;
    const fqdn = `${name}.${c.domain}`;
    const p = port++;
    rows.subdomains.push({ id, name, fqdn, status: 'active', created_at: 1 });
    rows.ports.push({ port: p, subdomain_id: id, protocol: 'http', position: 0 });
    const k = newPodKey(`relay bench ${name}`);
    rows.ssh_keys.push({ subdomain_id: id, algorithm: 'ssh-ed25519', public_key: k.publicKey, fingerprint: k.fingerprint, bits: 256, added_at: 1 });
    const files = new PodFiles(path.join(outDir!, name));
    fs.mkdirSync(files.dir, { mode: 0o700 });
    fs.writeFileSync(files.sshKey, k.privateKey, { mode: 0o600 });
    fs.writeFileSync(files.sshPub, `${k.publicKey} ${name}\n`, { mode: 0o644 });
    fs.writeFileSync(files.knownHosts, knownHosts, { mode: 0o644 });
    const state = { ...base, id, name, fqdn, services: [{ ...base.services[0]!, protocol: 'http' as const, port: p, localHost: '127.0.0.1', localPort }] };
    files.write(state);
    // Each pod starts at its own home relay (a stable hash of its name), as a real pod's list does.
    fs.writeFileSync(files.relays, relaysFileText(state), { mode: 0o644 });
    fs.writeFileSync(files.sshWrapper, sshWrapperScript(files.backoffState, '/usr/bin/ssh', { list: files.relays, next: files.relayNext }), { mode: 0o700 });
    fs.writeFileSync(files.autosshLog, '', { mode: 0o644 });
    entries.push({ index: i, argv: tunnelArgv(state, files), env: tunnelEnv(files.autosshLog, files.sshWrapper), state: files.backoffState, next: files.relayNext });
    pods.push({ name, fqdn, port: p });
  }
  return rows;
});
const manifest = path.join(outDir!, 'manifest.json');
fs.writeFileSync(manifest, JSON.stringify({ pods: entries }));
console.log(JSON.stringify({ manifest, pods }));
