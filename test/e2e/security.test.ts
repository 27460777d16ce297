/**
 * The security model tried as an attacker would, against a running world: a server (NSD primary, a BIND
 * secondary), pods behind the NAT router, a client on the internet that is also the on-path attacker.
 * Each test is one promise of the README's security model and fails on a pipe2me that breaks it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { ADDR, ADDR6, curl, dig, helperArgv, waitFor, type HostName } from '../world/index.js';
import { DOMAIN, ROOT } from '../stack/stack.js';
import { useStack } from '../stack/hooks.js';
import { SshClient } from '../stack/ssh.js';
import { run } from '../../src/util/exec.js';
import { openStore } from '../../src/state/db.js';
import { storeTargetOf } from '../../src/server/context.js';
import { createSubdomain, findSubdomain, setSshKey } from '../../src/state/subdomains.js';
import { parsePublicKey } from '../../src/ssh/pubkey.js';
import { readConnections } from '../../src/daemons/sessions.js';

const SESSION = path.join(ROOT, 'test', 'stack', 'bin', 'session.mjs');
const MITM = path.join(ROOT, 'test', 'stack', 'bin', 'mitm.mjs');
const T = { timeout: 30_000 };

interface SetupJson { name: string; fqdn: string; id: string; services: { protocol: string; port: number; url: string }[] }
interface ApiAnswer { id: string; secret: string; name: string; fqdn: string; ports: { port: number }[] }

let token: string;
let caPin: string;
let victim: SetupJson;

const stack = useStack({ dns: 'nsd', secondary: true, ipv6: true, pods: 2 }, async (s) => {
  await s.startServer();
  const t = await s.ctl<{ token: string; ca_pin: string }>(['token', 'create', '--label', 'security', '--max-ports', '3', '--max-subdomains', '20', '--lifespan', '1d']);
  token = t.json.token;
  caPin = t.json.ca_pin;
  victim = (await s.pod<SetupJson>(['setup', '--server', `https://server.${DOMAIN}`, '--token', token, '--ca-pin', caPin, '--protocols', 'http,https', '--ports', '8080,8443'], { timeout: 120_000 })).json;
  await s.startPodService('pod');
  await s.startPod('pod', ['--no-upnp']);
}, 240_000);

/** The API through nginx, from a host of the world, trusting the server's CA. */
async function api<T = unknown>(method: string, urlPath: string, body?: unknown, o: { secret?: string; from?: HostName } = {}) {
  const r = await curl(stack().world, `https://server.${DOMAIN}${urlPath}`, {
    from: o.from ?? 'cli', method, cacert: stack().caFile(), resolve: [`server.${DOMAIN}:443:${ADDR.server}`],
    headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...(o.secret ? { authorization: `Bearer ${o.secret}` } : {}) },
    ...(body === undefined ? {} : { data: JSON.stringify(body) }),
  });
  let json: T | undefined;
  try {
    json = JSON.parse(r.body) as T;
  } catch {
    json = undefined;
  }
  return { status: r.status, json, body: r.body };
}

/** A subdomain made with the token, as a pod would make it (its secret, no key yet). */
async function tokenSubdomain(protocols: string[], name?: string): Promise<ApiAnswer> {
  const r = await api<ApiAnswer>('POST', '/v1/subdomains', { token, protocols, ...(name ? { name } : {}) });
  expect(r.status, r.body).toBe(201);
  return r.json!;
}

function sshKey(name: string, type: 'ed25519' | 'rsa' = 'ed25519'): { file: string; pub: string } {
  const file = stack().world.path('keys', name);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  execFileSync('ssh-keygen', ['-q', '-t', type, ...(type === 'rsa' ? ['-b', '3072'] : []), '-N', '', '-C', name, '-f', file], { timeout: 60_000 });
  return { file, pub: fs.readFileSync(`${file}.pub`, 'utf8').trim() };
}

/** `ip netns exec` bind-mounts /etc/netns/<ns>/hosts over /etc/hosts, as it does resolv.conf. Returns its removal. */
function hostsFile(host: HostName, lines: string): () => void {
  const dir = path.join('/etc/netns', stack().world.ns(host));
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, 'hosts');
  fs.writeFileSync(file, lines);
  const remove = () => fs.rmSync(file, { force: true });
  stack().world.onCleanup(`hosts of ${host}`, remove);
  return remove;
}

/** An ssh attempt that may be admitted and then hold its connection until `ms`: timed out means admitted and held. */
async function heldAttempt(ssh: SshClient, extra: string[], ms: number): Promise<{ output: string; held: boolean }> {
  try {
    const r = await ssh.attempt(extra, [], ms);
    return { output: r.output, held: false };
  } catch (e) {
    if (/did not finish within/.test((e as Error).message)) return { output: '', held: true };
    throw e;
  }
}

describe('trust on first contact', () => {
  it('an on-path attacker who appends its own CA to the genuine one gets neither the token nor the pod (1)', async () => {
    const s = stack();
    const dir = s.world.mkdir('attacker', 0o700);
    const run1 = (args: string[]) => run('openssl', args, T);
    await run1(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', path.join(dir, 'ca.key'), '-out', path.join(dir, 'ca.crt'),
      '-subj', '/CN=Attacker Root', '-days', '5', '-addext', 'basicConstraints=critical,CA:true', '-addext', 'keyUsage=critical,keyCertSign']);
    await run1(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', path.join(dir, 'leaf.key'), '-out', path.join(dir, 'leaf.csr'), '-subj', `/CN=server.${DOMAIN}`]);
    fs.writeFileSync(path.join(dir, 'leaf.ext'), `subjectAltName=DNS:server.${DOMAIN}\n`);
    await run1(['x509', '-req', '-in', path.join(dir, 'leaf.csr'), '-CA', path.join(dir, 'ca.crt'), '-CAkey', path.join(dir, 'ca.key'), '-CAcreateserial', '-days', '5', '-extfile', path.join(dir, 'leaf.ext'), '-out', path.join(dir, 'leaf.crt')]);
    const bundle = path.join(dir, 'bundle.pem');
    fs.writeFileSync(bundle, fs.readFileSync(s.caFile(), 'utf8') + fs.readFileSync(path.join(dir, 'ca.crt'), 'utf8'));
    await s.world.start({ name: 'mitm', host: 'cli', argv: [process.execPath, MITM, ADDR.client, bundle, path.join(dir, 'leaf.crt'), path.join(dir, 'leaf.key')], ready: (d, p) => p.waitLog(d.name, ':443') });
    // pod2 reaches "the server" through the attacker.
    const unHost = hostsFile('pod2', `127.0.0.1 localhost\n${ADDR.client} server.${DOMAIN}\n`);
    const r = await s.pod(['setup', '--server', `https://server.${DOMAIN}`, '--token', token, '--ca-pin', caPin, '--protocols', 'http'], { host: 'pod2', allowFailure: true, timeout: 60_000 });
    expect(r.exitCode, r.stderr).toBe(9);
    expect(r.stderr).toMatch(/does not trust/);
    const seen = s.world.procs.log('mitm');
    expect(seen).toContain('"path":"/ca.pem"'); // it did get the first contact…
    expect(seen).not.toContain('"scheme":"https"'); // …and nothing after it: no token, no secret
    expect(seen).not.toContain(token);
    expect(fs.existsSync(path.join(s.podDir('pod2'), 'pod.json'))).toBe(false);
    // --ca-file under the same rule: the genuine CA with another appended is not "the server's CA".
    const twice = await s.pod(['setup', '--server', `https://server.${DOMAIN}`, '--token', token, '--ca-file', bundle, '--protocols', 'http'], { host: 'pod2', allowFailure: true });
    expect(twice.exitCode).toBe(2);
    expect(twice.stderr).toMatch(/exactly one certificate/);
    unHost();
    await s.world.stop('mitm');
  });

  it('setup refuses a plain http server URL before sending anything (6)', async () => {
    const s = stack();
    const before = (await s.ctl<{ uses: number; id: string }[]>(['token', 'list'])).json.map((t) => t.uses);
    const r = await s.pod(['setup', '--server', `http://server.${DOMAIN}`, '--token', token, '--ca-pin', caPin, '--protocols', 'http'], { host: 'pod2', allowFailure: true });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/must be an https:\/\/ URL .*in the clear/);
    expect((await s.ctl<{ uses: number }[]>(['token', 'list'])).json.map((t) => t.uses)).toEqual(before);
  });
});

describe('no single pod can stop the control plane', () => {
  it('a pod whose session arrives over IPv6 is never published as an A record, and every later apply works (2)', async () => {
    const s = stack();
    const created = await s.ctl<{ name: string; claim_token: string; ports: { port: number }[] }>(['add-subdomain', '--ports', 'tcp', '--name', 'six-pod']);
    const port = created.json.ports[0]!.port;
    const claimed = await api<ApiAnswer>('POST', '/v1/claim', { claim_token: created.json.claim_token });
    expect(claimed.status).toBe(200);
    const key = sshKey('six-pod');
    fs.writeFileSync(`${key.file}.pub`, key.pub + '\n');
    await s.ctl(['set-key', 'six-pod', `${key.file}.pub`]);
    // The pod is the client host, on the internet with IPv6: its service answers on every address.
    await s.world.start({ name: 'six-service', host: 'cli', argv: helperArgv('serve.mjs', ['echo', '::', port]), ready: (d, p) => p.waitLog(d.name, 'listening') });
    const ssh = new SshClient(s, key.file, 'cli');
    fs.writeFileSync(ssh.knownHosts, `${fs.readFileSync(ssh.knownHosts, 'utf8').trim()}\n[${ADDR6.server}]:${s.config.ssh.port} ${fs.readFileSync(s.layout.sshd.hostKey + '.pub', 'utf8').split(' ').slice(0, 2).join(' ')}\n`);
    const argv = ssh.argv(['-T', '-R', `${port}:127.0.0.1:${port}`]);
    argv[argv.length - 1] = `${s.tunnelUser}@${ADDR6.server}`;
    await s.world.start({ name: 'six-tunnel', host: 'cli', argv: [process.execPath, SESSION, ...argv], ready: (d, p) => p.waitLog(d.name, 'pipe2me-session: online') });
    expect(s.world.procs.log('six-tunnel')).toContain(`online six-pod from ${ADDR6.client}`);
    const m = await api('PUT', `/v1/subdomains/${claimed.json!.id}/mappings`, { mappings: [{ external_port: port, internal_port: port }] }, { secret: claimed.json!.secret });
    expect(m.status, m.body).toBe(200);

    const p = await s.ctl<{ results: { name: string; route: string; reason: string }[] }>(['probe', '--name', 'six-pod'], { allowFailure: true });
    expect(p.exitCode, p.stderr).toBe(0);
    const mine = p.json.results.find((x) => x.name === 'six-pod')!;
    expect(mine.route).toBe('server');
    expect(mine.reason).toMatch(/connects over IPv6/);
    const a = await dig(s.world, { server: ADDR.server, name: `six-pod.${DOMAIN}` });
    expect(a.answers.filter((x) => x.type === 'A').map((x) => x.data)).toEqual([ADDR.server]);
    // And the control plane goes on: a new subdomain is applied.
    const next = await s.ctl(['add-subdomain', '--ports', 'http', '--name', 'after-six'], { allowFailure: true });
    expect(next.exitCode, next.stderr).toBe(0);
    await s.world.stop('six-tunnel');
    await s.world.stop('six-service');
  });

  it('an address in the store that may not be published is left out with its reason; the zone still goes live (2)', async () => {
    const s = stack();
    const db = await openStore(storeTargetOf(s.config));
    try {
      // As an older pipe2me could have recorded them: an IPv6 address as the direct IPv4 one, a private address.
      const six = (await findSubdomain(db, 'six-pod'))!;
      await db.q.updateTable('subdomains').set({ route: 'direct', direct_ipv4: '2001:db8:0:1::3' }).where('id', '=', six.id).execute();
      const after = (await findSubdomain(db, 'after-six'))!;
      await db.q.updateTable('subdomains').set({ route: 'direct', direct_ipv4: '127.0.0.1' }).where('id', '=', after.id).execute();
    } finally {
      await db.close();
    }
    const r = await s.ctl<{ zone_serial: number }>(['apply'], { allowFailure: true });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/left out of the zone: six-pod\.pipe\.test A 2001:db8:0:1::3 \(.*IPv6 address, not one an A record can hold\)/);
    expect(r.stderr).toMatch(/left out of the zone: after-six\.pipe\.test A 127\.0\.0\.1 \(.*loopback address/);
    for (const name of ['six-pod', 'after-six']) {
      const d = await dig(s.world, { server: ADDR.server, name: `${name}.${DOMAIN}` });
      expect(d.answers.filter((x) => x.type === 'A').map((x) => x.data), name).toEqual([ADDR.server]);
    }
  });
});

describe('a pod key is one pod, and opens only its own ports', () => {
  it('a padded copy of another pod\'s RSA key is the same key: refused, and the victim keeps its logins (3)', async () => {
    const s = stack();
    const rsa = sshKey('rsa-victim', 'rsa');
    const v = await tokenSubdomain(['tcp'], 'zz-rsa-victim');
    expect((await api('PUT', `/v1/subdomains/${v.id}/ssh-key`, { public_key: rsa.pub }, { secret: v.secret })).status).toBe(200);
    // The attacker registers the victim's key with a leading zero byte added to e, under a name that sorts first.
    const blob = Buffer.from(rsa.pub.split(' ')[1]!, 'base64');
    const typeLen = blob.readUInt32BE(0);
    const eOff = 4 + typeLen;
    const eLen = blob.readUInt32BE(eOff);
    const e = blob.subarray(eOff + 4, eOff + 4 + eLen);
    const eLenBuf = Buffer.alloc(4);
    eLenBuf.writeUInt32BE(eLen + 1);
    const padded = Buffer.concat([blob.subarray(0, eOff), eLenBuf, Buffer.from([0]), e, blob.subarray(eOff + 4 + eLen)]);
    const attacker = await tokenSubdomain(['tcp'], 'aa-rsa-attacker');
    const r = await api<{ error: { code: string } }>('PUT', `/v1/subdomains/${attacker.id}/ssh-key`, { public_key: `ssh-rsa ${padded.toString('base64')}` }, { secret: attacker.secret });
    expect(r.status).toBe(409);
    expect(r.json!.error.code).toBe('key_in_use');
    const ssh = new SshClient(s, rsa.file);
    const login = await ssh.attempt(['-T', '-R', `${v.ports[0]!.port}:127.0.0.1:1`]);
    expect(login.output).toContain('pipe2me-session: online zz-rsa-victim');
    expect(login.output).not.toMatch(/remote port forwarding failed|Permission denied/);
    // Nor may a pod register the tunnel server's own host key.
    const hostKey = fs.readFileSync(s.layout.sshd.hostKey + '.pub', 'utf8').trim();
    const h = await api<{ error: { code: string; message: string } }>('PUT', `/v1/subdomains/${attacker.id}/ssh-key`, { public_key: hostKey }, { secret: attacker.secret });
    expect(h.status).toBe(409);
    expect(h.json!.error.message).toMatch(/own host key/);
  });

  it('one key holds at most 1 connection plus 1 during a reconnect; the rest are refused at once, -N included (5)', async () => {
    const s = stack();
    const key = path.join(s.podDir('pod'), 'id_ed25519');
    const ssh = new SshClient(s, key);
    // The pod's own tunnel holds one connection already; 20 more logins with its key race for the second.
    let conns: ReturnType<typeof readConnections> = [];
    const during = (async () => {
      await new Promise((r) => setTimeout(r, 4000));
      conns = readConnections(s.layout.connsDir, victim.name).filter((c) => c.alive && c.admitted);
    })();
    const attempts = await Promise.all(Array.from({ length: 20 }, () => heldAttempt(ssh, ['-N', '-o', 'ConnectionAttempts=1'], 6000)));
    await during;
    const refused = attempts.filter((a) => /Permission denied/.test(a.output)).length;
    expect(attempts.filter((a) => !a.held && !/Permission denied/.test(a.output)).map((a) => a.output)).toEqual([]);
    console.log(`one key, 20 extra logins: ${refused} refused at once, ${20 - refused} admitted; live connections of the pod now ${conns.length}`);
    expect(refused).toBeGreaterThanOrEqual(19);
    expect(conns.length).toBeLessThanOrEqual(2);
    // The pod itself never noticed.
    const page = await curl(s.world, victim.services[0]!.url, { resolve: [`${victim.fqdn}:${victim.services[0]!.port}:${ADDR.server}`] });
    expect(page.status).toBe(200);
  });

  it('a replaced key loses its live connections at once and logs in no more; the new key works (10)', async () => {
    const s = stack();
    const sub = await tokenSubdomain(['tcp'], 'rekey-pod');
    const k1 = sshKey('rekey-1');
    const k2 = sshKey('rekey-2');
    expect((await api('PUT', `/v1/subdomains/${sub.id}/ssh-key`, { public_key: k1.pub }, { secret: sub.secret })).status).toBe(200);
    const ssh1 = new SshClient(s, k1.file);
    const port = sub.ports[0]!.port;
    await s.world.start({ name: 'rekey-1', host: 'pod', argv: [process.execPath, SESSION, ...ssh1.argv(['-T', '-R', `${port}:127.0.0.1:1`])], ready: (d, p) => p.waitLog(d.name, 'pipe2me-session: online') });
    expect((await api('PUT', `/v1/subdomains/${sub.id}/ssh-key`, { public_key: k2.pub }, { secret: sub.secret })).status).toBe(200);
    const d = s.world.procs.get('rekey-1');
    await waitFor('the old key\'s session to end', async () => !d.running, { timeoutMs: 3000, intervalMs: 50 });
    expect((await ssh1.attempt(['-N'], [], 5000)).output).toMatch(/Permission denied/);
    const ssh2 = new SshClient(s, k2.file);
    expect((await ssh2.attempt(['-T', '-R', `${port}:127.0.0.1:1`])).output).toContain('pipe2me-session: online rekey-pod');
  });

  it('online follows the live sessions: a second login of the same key ending leaves the pod online (16)', async () => {
    const s = stack();
    const ssh = new SshClient(s, path.join(s.podDir('pod'), 'id_ed25519'));
    await s.world.start({ name: 'second-login', host: 'pod', argv: [process.execPath, SESSION, ...ssh.argv(['-T'])], ready: (d, p) => p.waitLog(d.name, 'pipe2me-session: online') });
    await s.world.stop('second-login');
    await new Promise((r) => setTimeout(r, 300));
    const v = await s.ctl<{ online: { from: string } | null }>(['show', victim.name]);
    expect(v.json.online?.from).toBe(ADDR.routerWan);
    const list = await s.ctl<{ name: string; online: unknown }[]>(['list']);
    expect(list.json.find((x) => x.name === victim.name)!.online).not.toBeNull();
  });
});

describe('no source can lock the fleet out', () => {
  it('400 idle connections from one host do not stop 30 pods behind one address from logging in at once (4)', async () => {
    const s = stack();
    const db = await openStore(storeTargetOf(s.config));
    const keys: string[] = [];
    try {
      for (let i = 0; i < 30; i++) {
        const k = sshKey(`fleet-${i}`);
        const created = await createSubdomain(db, { name: `fleet-${i}`, protocols: ['tcp'], expiresAt: null }, { domain: DOMAIN, range: { first: s.config.ports.first, last: s.config.ports.last }, maxPorts: 4, reserved: [] });
        await setSshKey(db, created.record.id, parsePublicKey(k.pub));
        keys.push(k.file);
      }
    } finally {
      await db.close();
    }
    await s.ctl(['apply']);
    await s.world.start({ name: 'flood', host: 'cli', argv: helperArgv('tcp-client.mjs', ['hold', ADDR.server, s.config.ssh.port, 400]), ready: (d, p) => p.waitLog(d.name, 'open ') });
    // Every fleet pod logs in from behind the same router address at the same moment (a CGNAT's view).
    const clients = keys.map((k) => new SshClient(s, k)); // they share one known_hosts file: written before any login reads it
    const logins = await Promise.all(clients.map((c) => c.attempt(['-T', '-o', 'ConnectionAttempts=1'], [], 15_000)));
    const ok = logins.filter((l) => l.output.includes('pipe2me-session: online')).length;
    for (const l of logins) if (!l.output.includes('pipe2me-session: online')) console.log(`failed login: ${l.output.trim()}`);
    console.log(`flood of 400 idle connections from ${ADDR.client}: ${ok}/30 fleet logins from ${ADDR.routerWan} succeeded`);
    expect(ok).toBe(30);
    await s.world.stop('flood');
  });
});

describe('what tokens may do', () => {
  it('a token makes at most its live subdomains and ports; token list shows the use (7)', async () => {
    const s = stack();
    const t = await s.ctl<{ token: string; id: string }>(['token', 'create', '--label', 'tiny', '--max-ports', '2', '--max-subdomains', '2']);
    const make = () => api<{ error?: { code: string } }>('POST', '/v1/subdomains', { token: t.json.token, protocols: ['http', 'https'] });
    expect((await make()).status).toBe(201);
    expect((await make()).status).toBe(201);
    const third = await make();
    expect(third.status).toBe(403);
    expect(third.json!.error!.code).toBe('token_subdomains_exhausted');
    const pod = await s.pod(['setup', '--server', `https://server.${DOMAIN}`, '--token', t.json.token, '--ca-pin', caPin, '--protocols', 'http'], { host: 'pod2', allowFailure: true, dir: s.world.path('pods', 'quota') });
    expect(pod.exitCode).toBe(10);
    const list = await s.ctl<{ id: string; live_subdomains: number; max_subdomains: number; live_ports: number; max_total_ports: number }[]>(['token', 'list']);
    expect(list.json.find((x) => x.id === t.json.id)).toMatchObject({ live_subdomains: 2, max_subdomains: 2, live_ports: 4, max_total_ports: 4 });
  });
});

describe('DNS gives away nothing and amplifies nothing', () => {
  it('neither the primary nor a secondary made by secondary-config hands the zone to anyone (8)', async () => {
    const s = stack();
    for (const server of [ADDR.server, ADDR.ns2]) {
      const r = await s.world.inNs('cli', ['dig', '+tcp', '+time=3', '+tries=1', `@${server}`, DOMAIN, 'AXFR'], { allowFailure: true, timeout: 15_000 });
      expect(r.stdout, server).toMatch(/Transfer failed|REFUSED|communications error/);
      expect(r.stdout, server).not.toContain(`${victim.fqdn}.`);
    }
  });

  it('ANY gets a minimal answer and a burst of identical queries is rate-limited (15)', async () => {
    const s = stack();
    // Over UDP (what a reflection attack uses), pipe2me's NSD primary (refuse-any) gives one RRset at most
    // or a truncated answer that sends the client to TCP (which cannot be spoofed). The BIND secondary made by
    // secondary-config answers ANY in full over UDP despite its minimal-any (a known gap, see the README):
    // its answer is bounded here by size, and by the rate limit below.
    const primary = await dig(s.world, { server: ADDR.server, name: DOMAIN, type: 'ANY', udpOnly: true });
    expect(primary.ok).toBe(true);
    expect(new Set(primary.answers.map((a) => a.type)).size, primary.raw).toBeLessThanOrEqual(1);
    const secondary = await dig(s.world, { server: ADDR.ns2, name: DOMAIN, type: 'ANY', udpOnly: true });
    expect(secondary.ok).toBe(true);
    expect(secondary.answers.length, secondary.raw).toBeLessThanOrEqual(8);
    for (const server of [ADDR.server, ADDR.ns2]) {
      const r = await s.world.inNs('cli', [...helperArgv('tcp-client.mjs', ['dnsburst', server, victim.fqdn, 300])], { timeout: 20_000 });
      const burst = JSON.parse(r.stdout) as { sent: number; full: number; truncated: number; none: number };
      console.log(`300 identical queries to ${server}: ${burst.full} full answers, ${burst.truncated} truncated, ${burst.none} unanswered`);
      expect(burst.full, server).toBeLessThan(150);
    }
  });
});

describe('what the CA can vouch for', () => {
  it('even signed with the CA\'s own key, a certificate for an IP address, a mail address or a URI outside the domain does not verify (9)', async () => {
    const s = stack();
    const dir = s.world.mkdir('nc', 0o700);
    for (const [san, ok] of [[`DNS:x.${DOMAIN}`, true], [`IP:${ADDR.server}`, false], ['email:ceo@evil.example', false], ['URI:https://evil.example/', false]] as const) {
      await run('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', path.join(dir, 'k'), '-out', path.join(dir, 'csr'), '-subj', `/CN=x.${DOMAIN}`], T);
      fs.writeFileSync(path.join(dir, 'ext'), `subjectAltName=${san}\n`);
      await run('openssl', ['x509', '-req', '-in', path.join(dir, 'csr'), '-CA', path.join(s.config.paths.ca, 'ca.crt'), '-CAkey', path.join(s.config.paths.ca, 'private', 'ca.key'),
        '-CAcreateserial', '-days', '2', '-extfile', path.join(dir, 'ext'), '-out', path.join(dir, 'crt')], T);
      const v = await run('openssl', ['verify', '-CAfile', s.caFile(), path.join(dir, 'crt')], { ...T, allowFailure: true });
      expect(v.exitCode === 0, san).toBe(ok);
    }
  });
});

describe('what a token holder learns, and what a local user can claim', () => {
  it('a control character in a pod\'s note is refused, and one already stored reaches the terminal escaped (11)', async () => {
    const s = stack();
    const sub = await tokenSubdomain(['tcp'], 'note-pod');
    const r = await api<{ error: { code: string } }>('PUT', `/v1/subdomains/${sub.id}/mappings`, { mappings: [], note: 'no router\u001b]0;pwned\u0007\u0000' }, { secret: sub.secret });
    expect(r.status).toBe(400);
    const db = await openStore(storeTargetOf(s.config));
    try {
      await db.q.updateTable('subdomains').set({ mapping_note: 'upnp failed\u001b[2J\u001b]0;pwned\u0007' }).where('name', '=', 'note-pod').execute();
    } finally {
      await db.close();
    }
    const shown = await s.ctl(['show', 'note-pod'], { json: false });
    expect(shown.stdout).toContain('the pod says: upnp failed\\x1b[2J\\x1b]0;pwned\\x07');
    expect(shown.stdout).not.toMatch(/[\u0000-\u0008\u000b-\u001f]/);
  });

  it('a duplicate mapping is the client\'s mistake: a 400, no stack trace in the log (14)', async () => {
    const s = stack();
    const sub = await tokenSubdomain(['tcp'], 'dup-pod');
    const port = sub.ports[0]!.port;
    const before = s.world.procs.log('api').length;
    const r = await api<{ error: { code: string } }>('PUT', `/v1/subdomains/${sub.id}/mappings`, { mappings: [{ external_port: port, internal_port: 1 }, { external_port: port, internal_port: 2 }] }, { secret: sub.secret });
    expect(r.status).toBe(400);
    expect(r.json!.error.code).toBe('duplicate_mapping');
    expect(s.world.procs.log('api').slice(before)).not.toMatch(/internal error|    at /);
  });

  it('a server failure tells the token holder nothing of the server; the operator finds it in the log under the same id (12)', async () => {
    const s = stack();
    const sub = await tokenSubdomain(['https'], 'five-pod');
    // The operator's mistake, not the pod's: the CA's key has gone missing, so signing fails.
    const cnf = path.join(s.config.paths.ca, 'private', 'ca.key');
    fs.renameSync(cnf, `${cnf}.away`);
    try {
      const dir = s.world.mkdir('five', 0o700);
      await run('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', path.join(dir, 'k'), '-out', path.join(dir, 'csr'), '-subj', `/CN=${sub.fqdn}`], T);
      const r = await api<{ error: { code: string; message: string; request_id: string } }>('POST', `/v1/subdomains/${sub.id}/certificate`, { csr: fs.readFileSync(path.join(dir, 'csr'), 'utf8') }, { secret: sub.secret });
      expect(r.status).toBeGreaterThanOrEqual(500);
      expect(r.body).not.toMatch(/\/run\/|\/var\/|\/etc\/|\.cnf|ca\.key|Could not|error:/);
      expect(r.json!.error.message).toBe('The server could not complete this request; its operator has been told. Try again later.');
      expect(r.json!.error.request_id).toMatch(/^[0-9a-f]{12}$/);
      await waitFor('the details in the log', async () => s.world.procs.log('api').includes(r.json!.error.request_id), { timeoutMs: 2000 });
      const line = s.world.procs.log('api').split('\n').find((l) => l.includes(r.json!.error.request_id))!;
      expect(line).toMatch(/openssl|cnf|ca/i);
    } finally {
      fs.renameSync(`${cnf}.away`, cnf);
    }
  });

  it('only nginx can set the client address: forged X-Real-IP on loopback is not believed, the trusted sockets refuse other users (13)', async () => {
    const s = stack();
    const limit = s.config.api.ratePerMinute;
    let last = 0;
    for (let i = 0; i <= limit; i++) {
      const r = await s.world.inNs('srv', ['curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '-H', `X-Real-IP: 198.51.100.${i % 250}`, `http://127.0.0.1:${s.config.http.apiPort}/v1`], T);
      last = Number(r.stdout);
    }
    expect(last).toBe(429);
    const st = fs.statSync(s.layout.nginx.socketDir);
    expect(st.mode & 0o777).toBe(0o750);
    const uid = execFileSync('id', ['-u', s.tunnelUser], { encoding: 'utf8' }).trim();
    for (const sock of [s.layout.nginx.apiSocket, s.layout.nginx.httpsSocket]) {
      const r = await s.world.inNs('srv', ['setpriv', '--reuid', uid, '--regid', uid, '--clear-groups', 'curl', '-s', '-m', '3', '--unix-socket', sock, 'http://x/v1'], { ...T, allowFailure: true });
      expect(r.exitCode, sock).toBe(7); // could not connect
    }
  });
});
