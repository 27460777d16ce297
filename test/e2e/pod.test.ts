/**
 * A pod owner's path, end to end (issue: pod side and API): `pipe2me setup` with a token, `pipe2me
 * start`, and a client on the internet reaching the pod's services through the server — real sshd,
 * autossh, nginx, BIND, openssl; checked with curl, dig, openssl s_client and ssh.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ADDR, changeRouterPublicAddress, connectionCost, curl, cutPodLink, dig, restorePodLink, sClient, waitFor } from '../world/index.js';
import { DOMAIN } from '../stack/stack.js';
import { useStack } from '../stack/hooks.js';
import { SshClient } from '../stack/ssh.js';
import { pidsOfSshdSessions } from '../stack/sessions.js';
import { aliveWindowSeconds } from '../../src/render/render.js';

interface SetupJson {
  name: string;
  fqdn: string;
  services: { protocol: string; port: number; localPort: number; url: string }[];
  entry: { http: string | null; https: string | null };
}

let pod: SetupJson;
let token: string;
let caPin: string;

async function clientGet(url: string, opts: { cacert?: boolean } = {}) {
  const u = new URL(url);
  const d = await dig(stack().world, { server: ADDR.server, name: u.hostname });
  const ip = d.answers.find((a) => a.type === 'A')?.data;
  expect(ip, `no A record for ${u.hostname}`).toBeTruthy();
  const port = u.port || (u.protocol === 'https:' ? '443' : '80');
  return curl(stack().world, url, { resolve: [`${u.hostname}:${port}:${ip}`], ...(opts.cacert ? { cacert: stack().caFile() } : {}) });
}

async function tunnelServes(): Promise<boolean> {
  const r = await clientGet(pod.services[0]!.url).catch(() => undefined);
  return Boolean(r?.ok && r.status === 200);
}

async function timeUntilServing(what: string, limitMs = 40_000): Promise<number> {
  const t0 = performance.now();
  await waitFor(what, tunnelServes, { timeoutMs: limitMs, intervalMs: 100 });
  const ms = performance.now() - t0;
  console.log(`recovery: ${what}: the tunnel serves again after ${(ms / 1000).toFixed(2)} s`);
  return ms;
}

const stack = useStack({}, async (stack) => {
  await stack.startServer();
  const t = await stack.ctl<{ token: string; ca_pin: string }>(['token', 'create', '--label', 'e2e', '--max-ports', '3', '--lifespan', '1d']);
  token = t.json.token;
  caPin = t.json.ca_pin;
  pod = (await stack.pod<SetupJson>(['setup', '--server', `https://server.${DOMAIN}`, '--token', token, '--ca-pin', caPin, '--protocols', 'http,https', '--ports', '8080,8443'], { timeout: 120_000 })).json;
  await stack.startPodService('pod');
  // No UPnP in this file: every client goes through the tunnel (the direct route has its own tests).
  await stack.startPod('pod', ['--no-upnp']);
}, 240_000);

describe('setup and start', () => {
  it('setup made 0600 keys on the pod and pinned the server', () => {
    const dir = stack().podDir('pod');
    for (const f of ['id_ed25519', 'tls.key', 'secret', 'pod.json']) expect(fs.statSync(path.join(dir, f)).mode & 0o777, f).toBe(0o600);
    expect(fs.readFileSync(path.join(dir, 'known_hosts'), 'utf8')).toMatch(/^pipe2me-pipe\.test ssh-ed25519 /);
    expect(fs.readFileSync(path.join(dir, 'ca.pem'), 'utf8')).toBe(fs.readFileSync(stack().caFile(), 'utf8'));
    expect(pod.fqdn).toMatch(new RegExp(`^[a-z]+-[a-z]+-[a-z]+\\.${DOMAIN.replace('.', '\\.')}$`));
  });

  it('setup refuses to overwrite an existing setup without --force', async () => {
    const r = await stack().pod(['setup', '--server', `https://server.${DOMAIN}`, '--token', token, '--ca-pin', caPin, '--protocols', 'http'], { allowFailure: true });
    expect(r.exitCode).toBe(5);
    expect(r.stderr).toContain('already holds the setup of');
  });

  it('the client reaches the http service at http://fqdn:port/ through the server', async () => {
    const r = await clientGet(pod.services[0]!.url);
    expect(r.status).toBe(200);
    expect(r.body).toMatch(/^hello from pod over http; path \/; peer 127\.0\.0\.1/);
  });

  it('and the https service at https://fqdn:port/ with the certificate verified against the CA; s_client shows the chain', async () => {
    const r = await clientGet(pod.services[1]!.url, { cacert: true });
    expect(r.sslVerifyResult).toBe(0);
    expect(r.body).toMatch(/^hello from pod over https/);
    const t = await sClient(stack().world, { address: ADDR.server, port: pod.services[1]!.port, servername: pod.fqdn, cafile: stack().caFile(), verifyHostname: pod.fqdn });
    expect(t.verifyCode).toBe(0);
    expect(t.chain[0]!.subject).toContain(pod.fqdn);
    expect(t.chain[t.chain.length - 1]!.issuer).toContain('pipe2me CA for pipe.test');
  });

  it('http://fqdn/ and https://fqdn/ redirect as specified', async () => {
    const h = await clientGet(`http://${pod.fqdn}/a?b=c`);
    expect(h.status).toBe(302);
    expect(h.location).toBe(`http://${pod.fqdn}:${pod.services[0]!.port}/a?b=c`);
    const s = await clientGet(`https://${pod.fqdn}/a?b=c`, { cacert: true });
    expect(s.sslVerifyResult).toBe(0);
    expect(s.location).toBe(`https://${pod.fqdn}:${pod.services[1]!.port}/a?b=c`);
  });

  it('status and verify report the tunnel up and the pod online', async () => {
    const st = await stack().pod<{ running: boolean; tunnel: { state: string }; certificate: { days_left: number } }>(['status']);
    expect(st.json.running).toBe(true);
    expect(st.json.tunnel.state).toBe('up');
    expect(st.json.certificate.days_left).toBeGreaterThan(80);
    const v = await stack().pod<{ online: { from: string } }>(['verify']);
    expect(v.json.online.from).toBe(ADDR.routerWan);
  });
});

describe('what the pod key may not do', () => {
  it('a shell, a command, a pty, -L, -D, -W, agent and X11 forwarding, sftp, another pod\'s port and a privileged port are refused', async () => {
    const s = stack();
    const other = (await s.ctl<{ ports: { port: number }[] }>(['add-subdomain', '--ports', 'tcp'])).json.ports[0]!.port;
    const ssh = new SshClient(s, path.join(s.podDir('pod'), 'id_ed25519'));
    const shell = await ssh.attempt([]);
    expect(shell.output).toContain('pipe2me-session: online');
    expect(shell.output).not.toMatch(/\$ |# /);
    const cmd = await ssh.attempt([], ['id']);
    expect(cmd.output).not.toMatch(/uid=\d+/);
    expect((await ssh.attempt(['-tt'])).output).toContain('PTY allocation request failed');
    expect((await ssh.attempt(['-W', '127.0.0.1:80'])).output).toMatch(/administratively prohibited|stdio forwarding failed/);
    const agent = await ssh.attempt(['-A', '-o', 'IdentityAgent=/dev/null'], ['echo', '$SSH_AUTH_SOCK']);
    expect(agent.output).not.toMatch(/\/tmp\/ssh-/);
    const x11 = await ssh.attempt(['-X', '-v'], []);
    expect(x11.output).not.toMatch(/DISPLAY=|X11 forwarding request accepted/);
    const sftp = await s.world.inNs('pod', ['sftp', '-b', '-', ...ssh.argv(['-F', '/dev/null']).slice(1, -1).filter((x) => x !== '-p'), '-P', String(s.config.ssh.port), `${s.tunnelUser}@${ADDR.server}`], { allowFailure: true, timeout: 15_000, input: 'ls\n' });
    expect(sftp.exitCode).not.toBe(0);
    for (const port of [other, 443, 22]) {
      const r = await ssh.attempt(['-N', '-R', `${port}:127.0.0.1:8080`]);
      expect(r.output, String(port)).toContain('remote port forwarding failed');
    }
    for (const flag of [['-L', '9200:127.0.0.1:80'], ['-D', '9201']]) {
      const name = `key${flag[0]}`;
      await s.world.start({ name, host: 'pod', argv: ssh.argv(['-N', '-v', ...flag]) });
      const port = Number(flag[1]!.split(':')[0]);
      await s.world.waitTcp('pod', '127.0.0.1', port);
      await s.world.inNs('pod', ['curl', '-s', '-m', '2', ...(flag[0] === '-D' ? ['--socks5', `127.0.0.1:${port}`, 'http://127.0.0.1:80/'] : [`http://127.0.0.1:${port}/`])], { allowFailure: true, timeout: 10_000 });
      await waitFor(`${flag[0]} refused`, async () => s.world.procs.log(name).includes('administratively prohibited'), { timeoutMs: 5000 });
      await s.world.stop(name);
    }
  });
});

describe('the tunnel runs with a session', () => {
  it('a new client connection through the tunnel costs milliseconds, not tens of them', async () => {
    const port = pod.services[0]!.port;
    const r = await connectionCost(stack().world, { address: ADDR.server, port, count: 50, payload: 'GET / HTTP/1.0\r\n\r\n' });
    console.log(`new connection through the tunnel (connect + first round trip), 50 back to back: median ${r.totalMs.median.toFixed(2)} ms, p90 ${r.totalMs.p90.toFixed(2)} ms`);
    expect(r.failures).toBe(0);
    expect(r.totalMs.median).toBeLessThan(10);
  });
});

describe('recovery', () => {
  it('a killed session comes back on its own', async () => {
    const pids = pidsOfSshdSessions(stack());
    expect(pids.length).toBeGreaterThan(0);
    for (const p of pids) process.kill(p, 'SIGTERM');
    await timeUntilServing('after its sshd session was killed');
  });

  it('a restarted sshd (sessions and all, as at a server reboot) is reconnected to', async () => {
    const sessions = pidsOfSshdSessions(stack());
    await stack().world.stop('sshd');
    // Stopping the listener leaves established sessions alive (as systemd's KillMode=process would); a reboot does not.
    for (const p of sessions) process.kill(p, 'SIGKILL');
    await waitFor('tunnel down', async () => !(await tunnelServes()), { timeoutMs: 5000 });
    await stack().world.start(stack().world.procs.get('sshd')!.spec);
    await timeUntilServing('after the server\'s sshd was down and restarted');
  });

  it('a 20 s blackhole of the pod\'s link: the stale session frees the port within the ClientAlive window, and the tunnel returns', async () => {
    const s = stack();
    const port = pod.services[0]!.port;
    await cutPodLink(s.world, 'pod', 'link');
    const cut = performance.now();
    // sshd must drop the dead session (ClientAliveInterval 5 × CountMax 3) and free the port on its own.
    await waitFor('stale session gone', async () => {
      const r = await s.world.inNs('srv', ['ss', '-Htln', `sport = :${port}`], { allowFailure: true });
      return r.stdout.trim() === '';
    }, { timeoutMs: (aliveWindowSeconds(s.config) + 10) * 1000, intervalMs: 250 });
    const freed = (performance.now() - cut) / 1000;
    console.log(`blackhole: the server freed the stale session's port after ${freed.toFixed(1)} s`);
    expect(freed).toBeLessThan(aliveWindowSeconds(s.config) + 4);
    const wait = 20_000 - (performance.now() - cut);
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    await restorePodLink(s.world, 'pod');
    const ms = await timeUntilServing('after a 20 s blackhole of the pod\'s link', 60_000);
    expect(ms).toBeLessThan(30_000);
  }, 120_000);

  it("a change of the router's public address: the pod has its stale session cut and serves again in seconds", async () => {
    const s = stack();
    await changeRouterPublicAddress(s.world);
    try {
      const ms = await timeUntilServing("after the router's public address changed");
      // The old session still held the ports (the server never heard the old connection die).
      expect(s.world.procs.log('pod-pipe2me')).toMatch(/the server cut \d+ stale session/);
      expect(ms).toBeLessThan(10_000);
      const v = await s.pod<{ online: { from: string } }>(['verify']);
      expect(v.json.online.from).toBe(ADDR.routerWanAlt);
    } finally {
      await changeRouterPublicAddress(s.world, ADDR.routerWan);
      await timeUntilServing('after the router got its first address back');
    }
  }, 90_000);
});

describe('the rest of the pod\'s commands', () => {
  it('install-service renders a systemd unit that systemd-analyze accepts', async () => {
    const r = await stack().pod<{ kind: string; content: string; name: string }>(['install-service', '--print']);
    expect(r.json.kind).toBe('systemd');
    expect(r.json.content).toContain(`ExecStart=${process.execPath} `);
    expect(r.json.content).toContain(`start --dir ${stack().podDir('pod')}`);
    const unit = path.join(stack().world.mkdir('unit', 0o755), r.json.name);
    fs.writeFileSync(unit, r.json.content);
    const v = await stack().world.inNs('pod', ['systemd-analyze', 'verify', unit], { allowFailure: true, timeout: 60_000 });
    expect(v.stderr.split('\n').filter((l) => l.includes(r.json.name) && !/Cannot add dependency|not found/i.test(l))).toEqual([]);
    expect(v.exitCode).toBe(0);
  });

  it('renew gets a new certificate for a new key, and the https service serves it after a reload', async () => {
    const s = stack();
    const dir = s.podDir('pod');
    const oldCert = fs.readFileSync(path.join(dir, 'tls.crt'), 'utf8');
    const oldKey = fs.readFileSync(path.join(dir, 'tls.key'), 'utf8');
    const r = await s.pod<{ not_after: string }>(['renew']);
    expect(new Date(r.json.not_after).getTime()).toBeGreaterThan(Date.now() + 80 * 86400_000);
    expect(fs.readFileSync(path.join(dir, 'tls.crt'), 'utf8')).not.toBe(oldCert);
    expect(fs.readFileSync(path.join(dir, 'tls.key'), 'utf8')).not.toBe(oldKey);
    expect(fs.statSync(path.join(dir, 'tls.key')).mode & 0o777).toBe(0o600);
    process.kill(s.world.procs.get('pod-service').pid, 'SIGHUP');
    await waitFor('new certificate served', async () => {
      const t = await sClient(s.world, { address: ADDR.server, port: pod.services[1]!.port, servername: pod.fqdn, cafile: s.caFile() });
      return t.chain[0]?.pem?.trim() === fs.readFileSync(path.join(dir, 'tls.crt'), 'utf8').trim();
    }, { timeoutMs: 5000 });
  });

  it('without its programs, setup says which package to install', async () => {
    const r = await stack().world.inNs('pod', ['env', 'PATH=/nonexistent', process.execPath, (await import('../stack/stack.js')).POD, '--dir', stack().world.path('pods', 'noprog'), 'setup', '--server', `https://server.${DOMAIN}`, '--token', token, '--protocols', 'http'], { allowFailure: true });
    expect(r.exitCode).toBe(7);
    expect(r.stderr).toContain('hint: Install it: apt-get install openssh-client');
  });

  it('ca show and ca revoke on request: the served CRL lists it and openssl verify -crl_check refuses it', async () => {
    const s = stack();
    const dir = s.podDir('pod');
    const serial = (await s.world.inNs('pod', ['openssl', 'x509', '-noout', '-serial', '-in', path.join(dir, 'tls.crt')])).stdout.trim().split('=')[1]!;
    const shown = await s.ctl<{ names: string[]; status: string }>(['ca', 'show', serial]);
    expect(shown.json.names).toEqual([pod.fqdn]);
    expect(shown.json.status).toBe('V');
    await s.ctl(['ca', 'revoke', serial, '--reason', 'keyCompromise']);
    const crl = await curl(s.world, `http://server.${DOMAIN}/crl.pem`, { resolve: [`server.${DOMAIN}:80:${ADDR.server}`] });
    const crlFile = path.join(s.world.mkdir('crl', 0o755), 'crl.pem');
    fs.writeFileSync(crlFile, crl.body);
    const v = await s.world.inNs('cli', ['openssl', 'verify', '-crl_check', '-CAfile', s.caFile(), '-CRLfile', crlFile, path.join(dir, 'tls.crt')], { allowFailure: true });
    expect(v.exitCode).not.toBe(0);
    expect(v.output).toContain('certificate revoked');
    // The pod gets a fresh one, which verifies.
    await s.pod(['renew']);
    const crl2 = await curl(s.world, `http://server.${DOMAIN}/crl.pem`, { resolve: [`server.${DOMAIN}:80:${ADDR.server}`] });
    fs.writeFileSync(crlFile, crl2.body);
    const v2 = await s.world.inNs('cli', ['openssl', 'verify', '-crl_check', '-CAfile', s.caFile(), '-CRLfile', crlFile, path.join(dir, 'tls.crt')], { allowFailure: true });
    expect(v2.exitCode).toBe(0);
  });

  it('stop ends the tunnel and removes nothing else; destroy gives the name up on the server', async () => {
    const s = stack();
    await s.world.stop('pod-pipe2me');
    const st = await s.pod<{ running: boolean }>(['status']);
    expect(st.json.running).toBe(false);
    const d = await s.pod<{ destroyed: string }>(['destroy']);
    expect(d.json.destroyed).toBe(pod.fqdn);
    expect(fs.existsSync(s.podDir('pod'))).toBe(false);
    const list = (await s.ctl<{ fqdn: string }[]>(['list'])).json;
    expect(list.map((x) => x.fqdn)).not.toContain(pod.fqdn);
    // Its certificates are revoked and the CRL nginx serves lists them.
    const revoked = (await s.ctl<{ subject: string; status: string; serial: string }[]>(['ca', 'list'])).json.filter((c) => c.subject.includes(pod.fqdn));
    expect(revoked.length).toBeGreaterThanOrEqual(2);
    expect(revoked.every((c) => c.status === 'R')).toBe(true);
    const crl = await curl(s.world, `http://server.${DOMAIN}/crl.pem`, { resolve: [`server.${DOMAIN}:80:${ADDR.server}`] });
    const text = await s.world.inNs('cli', ['openssl', 'crl', '-noout', '-text'], { input: crl.body });
    for (const c of revoked) expect(text.stdout.toUpperCase()).toContain(c.serial.toUpperCase());
  });
});
