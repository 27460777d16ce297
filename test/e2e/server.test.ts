/**
 * The server controller against real daemons (issue: state, rendering, safe apply): pipe2me-ctl renders,
 * the real sshd / nginx / BIND / NSD run from those files in the test world, and real clients check what
 * they do. No pod software here: the pod side is plain ssh with a key registered by `set-key`.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { afterAll, afterEach, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { ADDR, curl, dig, helperArgv, sClient, waitFor } from '../world/index.js';
import { Stack, DOMAIN } from '../stack/stack.js';
import { SshClient } from '../stack/ssh.js';
import { run } from '../../src/util/exec.js';

interface SubdomainJson {
  name: string;
  fqdn: string;
  ports: { port: number; protocol: string; url: string }[];
}

function dumpOnFailure(stack: () => Stack | undefined) {
  return (ctx: TestContext) => {
    if (ctx.task.result?.state === 'fail') console.log(stack()?.world.dumpLogs(30));
  };
}

async function newKey(stack: Stack, name: string): Promise<string> {
  const dir = stack.world.mkdir(`keys/${name}`, 0o700);
  const key = path.join(dir, 'id_ed25519');
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key], { timeout: 30_000 });
  return key;
}

function liveFiles(stack: Stack): Record<string, string> {
  const L = stack.layout;
  const out: Record<string, string> = {};
  for (const f of [L.sshd.config, L.sshd.keyList, L.nginx.config, L.nginx.entryMap, L.bind.config, L.bind.zone, L.nsd.config]) {
    if (fs.existsSync(f)) out[f] = fs.readFileSync(f, 'utf8');
  }
  return out;
}

// The store's engine and the DNS daemon are independent: postgres-server.test.ts runs this file on
// PostgreSQL with BIND only (NSD is covered on SQLite here), which keeps the suite within its time.
const DAEMONS = (['bind', 'nsd'] as const).filter((d) => !process.env.PIPE2ME_TEST_DNS || process.env.PIPE2ME_TEST_DNS === d);
describe.each(DAEMONS)('server with %s', (dns) => {
  let stack: Stack | undefined;
  let a: SubdomainJson;
  let b: SubdomainJson;
  let keyA: string;

  beforeAll(async () => {
    stack = await Stack.create({ dns, upnp: false });
    await stack.startServer();
    a = (await stack.ctl<SubdomainJson>(['add-subdomain', '--ports', 'http,https,tcp', '--name', 'alpha'])).json;
    b = (await stack.ctl<SubdomainJson>(['add-subdomain', '--ports', 'https'])).json;
    keyA = await newKey(stack, 'alpha');
    await stack.ctl(['set-key', 'alpha', keyA + '.pub']);
  }, 180_000);
  afterAll(async () => {
    await stack?.destroy();
  });
  afterEach(dumpOnFailure(() => stack));

  it('names are readable and unique, ports come from the range in service order', () => {
    expect(a.fqdn).toBe(`alpha.${DOMAIN}`);
    expect(b.name).toMatch(/^[a-z]+-[a-z]+-[a-z]+$/);
    expect(a.ports.map((p) => p.protocol)).toEqual(['http', 'https', 'tcp']);
    const all = [...a.ports, ...b.ports].map((p) => p.port);
    expect(new Set(all).size).toBe(4);
    for (const p of all) expect(p).toBeGreaterThanOrEqual(20000);
  });

  it(`dig answers the pod's name with the configured TTL from ${dns}, authoritatively`, async () => {
    const r = await dig(stack!.world, { server: ADDR.server, name: a.fqdn, type: 'A' });
    expect(r.status).toBe('NOERROR');
    expect(r.flags).toContain('aa');
    expect(r.answers).toEqual([expect.objectContaining({ name: `${a.fqdn}.`, ttl: 30, type: 'A', data: ADDR.server })]);
  });

  it('nginx redirects http://NAME/x?y to the first http service, keeping path and query', async () => {
    const r = await curl(stack!.world, `http://${a.fqdn}/x/y?z=1&w=2`, { resolve: [`${a.fqdn}:80:${ADDR.server}`] });
    expect(r.status).toBe(302);
    expect(r.location).toBe(`http://${a.fqdn}:${a.ports[0]!.port}/x/y?z=1&w=2`);
  });

  it('https://NAME/ goes to the first https service, and never from https to http', async () => {
    const r = await curl(stack!.world, `https://${a.fqdn}/p?q`, { resolve: [`${a.fqdn}:443:${ADDR.server}`], cacert: stack!.caFile() });
    expect(r.sslVerifyResult).toBe(0);
    expect(r.status).toBe(302);
    expect(r.location).toBe(`https://${a.fqdn}:${a.ports[1]!.port}/p?q`);
    // An https-only pod: http://NAME/ goes to its https service; its https entry never points at http.
    const h = await curl(stack!.world, `http://${b.fqdn}/`, { resolve: [`${b.fqdn}:80:${ADDR.server}`] });
    expect(h.location).toBe(`https://${b.fqdn}:${b.ports[0]!.port}/`);
  });

  it('the https entry is served with the CA\'s wildcard certificate, and apply renews it inside the renewal window', async () => {
    const s = stack!;
    const serial = async () => {
      const t = await sClient(s.world, { address: ADDR.server, port: 443, servername: a.fqdn, cafile: s.caFile(), verifyHostname: a.fqdn });
      expect(t.verifyCode).toBe(0);
      const x = await s.world.inNs('cli', ['openssl', 'x509', '-noout', '-serial', '-ext', 'subjectAltName'], { input: t.chain[0]!.pem });
      return x.stdout;
    };
    const before = await serial();
    expect(before).toContain(`DNS:*.${DOMAIN}`);
    const config = fs.readFileSync(s.configFile, 'utf8');
    // Certificates live 90 days: a 100-day renewal window means "renew now".
    fs.writeFileSync(s.configFile, config + '\nca:\n  renew_before_days: 100\n');
    try {
      const r = await s.ctl<{ changed_units: string[] }>(['apply']);
      expect(r.json.changed_units).toEqual([]); // the files nginx reads are the same paths; only the certificate changed
      // nginx picks the new certificate up on reload: apply reloads nginx when it renewed.
      await waitFor('renewed certificate served', async () => (await serial()) !== before, { timeoutMs: 5000 });
    } finally {
      fs.writeFileSync(s.configFile, config);
    }
  });

  it('an unknown name gets a clear 404', async () => {
    const r = await curl(stack!.world, `http://nobody.${DOMAIN}/`, { resolve: [`nobody.${DOMAIN}:80:${ADDR.server}`] });
    expect(r.status).toBe(404);
    expect(r.body).toContain('no service is published under this name');
  });

  it('the key lookup prints exactly the pod\'s own line for its key, and nothing at all for odd input', async () => {
    const s = stack!;
    const c = s.config.ssh;
    // As sshd runs it: the unprivileged key lookup user, the login's user and the offered key's fingerprint.
    // Its parent process stands for the connection (the lookup records it, and cutting the pod's sessions
    // kills it): `timeout` is that parent here, gone when the lookup ends, never this test's process.
    const lookup = (...args: string[]) => run('timeout', ['10', 'setpriv', '--reuid', c.keysUser, '--regid', c.keysUser, '--clear-groups', '/bin/sh', s.layout.sshd.keysCommand, ...args], { allowFailure: true, timeout: 15_000 });
    const fp = (await run('ssh-keygen', ['-l', '-E', 'sha256', '-f', keyA + '.pub'], { timeout: 10_000 })).stdout.split(' ')[1]!;
    const own = await lookup(c.tunnelUser, fp);
    expect(own.exitCode).toBe(0);
    expect(own.stdout.trim().split('\n')).toHaveLength(1);
    expect(own.stdout).toMatch(new RegExp(`^restrict,port-forwarding,${a.ports.map((p) => `permitlisten="${p.port}"`).join(',')},command="exec \\S+ alpha" ssh-ed25519 \\S+ pipe2me:alpha\\n$`));
    const odd: [string, string[]][] = [
      ['another user', ['root', fp]],
      ['no fingerprint', [c.tunnelUser]],
      ['an unknown key', [c.tunnelUser, 'SHA256:' + 'A'.repeat(43)]],
      ['an MD5 fingerprint', [c.tunnelUser, 'MD5:' + fp.slice(7)]],
      ['a newline in it', [c.tunnelUser, fp.slice(0, 20) + '\n' + fp.slice(21)]],
      ['a path in it', [c.tunnelUser, 'SHA256:../../../../../../etc/passwd' + 'A'.repeat(8)]],
      ['a huge one', [c.tunnelUser, 'SHA256:' + 'A'.repeat(100_000)]],
      ['a key type and blob instead', [c.tunnelUser, 'ssh-dss AAAAB3NzaC1kc3MAAACBAP']],
      ['an extra argument', [c.tunnelUser, fp, 'x']],
    ];
    for (const [what, args] of odd) {
      const r = await lookup(...args);
      expect(r.stdout, what).toBe('');
    }
    // Connections whose monitor was killed and is not yet reaped (zombies, as after an sshd restart) hold
    // no place: with two such records, as many as the pod may hold, its login is still admitted.
    const holder = spawn('python3', ['-c', 'import os,sys,time\npids=[]\nfor _ in range(2):\n  p=os.fork()\n  if p==0: os._exit(0)\n  pids.append(p)\nprint(*pids, flush=True)\ntime.sleep(30)'], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      const zombies = (await new Promise<string>((res) => holder.stdout!.once('data', (d: Buffer) => res(d.toString())))).trim().split(' ');
      await waitFor('both children are zombies', async () => zombies.every((z) => fs.readFileSync(`/proc/${z}/stat`, 'utf8').split(') ')[1]!.startsWith('Z')), { timeoutMs: 5000 });
      const dir = path.join(s.layout.connsDir, a.name);
      // The API's housekeeping removes a pod's directory once its records are dead (the lookups above
      // came from short-lived processes): make it again as the lookup would, owned by the keys user.
      if (!fs.existsSync(dir)) {
        const owner = fs.statSync(s.layout.connsDir);
        fs.mkdirSync(dir, { mode: 0o755 });
        fs.chownSync(dir, owner.uid, owner.gid);
      }
      for (const z of zombies) {
        const start = fs.readFileSync(`/proc/${z}/stat`, 'utf8').split(') ')[1]!.split(' ')[19];
        fs.writeFileSync(path.join(dir, z), `${start} ${fp} admitted\n`);
      }
      expect((await lookup(c.tunnelUser, fp)).stdout).toBe(own.stdout);
    } finally {
      holder.kill('SIGKILL');
    }
  });

  it("a pod key opens its own -R port and nothing else: no other port, command, pty, -L, -D, -W", async () => {
    const s = stack!;
    const ssh = new SshClient(s, keyA);
    const own = a.ports[2]!.port;
    // Own port: the forward works and a client on the internet reaches the pod's listener through it.
    await s.world.start({ name: 'alpha-echo', host: 'pod', argv: helperArgv('serve.mjs', ['whoami', '127.0.0.1', 9000]), ready: (d, p) => p.waitLog(d.name, 'listening').then(() => undefined) });
    await s.world.start({ name: 'alpha-ssh', host: 'pod', argv: ssh.argv(['-N', '-R', `${own}:127.0.0.1:9000`]) });
    await s.world.waitTcp('cli', ADDR.server, own);
    const r = await curl(s.world, `telnet://${ADDR.server}:${own}`, { timeoutMs: 2000, extraArgs: ['--max-time', '1'] });
    expect(r.body).toMatch(/^peer 127\.0\.0\.1 /);
    await s.world.stop('alpha-ssh');

    const other = await ssh.attempt(['-N', '-R', `${b.ports[0]!.port}:127.0.0.1:9000`]);
    expect(other.exitCode).toBe(255);
    expect(other.output).toContain('remote port forwarding failed');
    const privileged = await ssh.attempt(['-N', '-R', '443:127.0.0.1:9000']);
    expect(privileged.output).toContain('remote port forwarding failed');

    const cmd = await ssh.attempt([], ['echo', 'PWNED-$((6*7))']);
    expect(cmd.output).not.toContain('PWNED-42');
    expect(cmd.output).toContain('pipe2me-session: online alpha');

    const pty = await ssh.attempt(['-tt']);
    expect(pty.output).toMatch(/PTY allocation request failed/);

    const w = await ssh.attempt(['-W', '127.0.0.1:22']);
    expect(w.exitCode).toBe(255);
    expect(w.output).toMatch(/administratively prohibited|stdio forwarding failed/);

    for (const flag of [['-L', '9100:127.0.0.1:22'], ['-D', '9101']]) {
      // ssh -N -L/-D only fails when a connection uses the forward: hold it, connect through it, look.
      const name = `alpha-${flag[0]!.slice(1)}`;
      await s.world.start({ name, host: 'pod', argv: ssh.argv(['-N', '-v', ...flag]) });
      const port = Number(flag[1]!.split(':')[0]);
      await s.world.waitTcp('pod', '127.0.0.1', port);
      await s.world.inNs('pod', ['curl', '-s', '-m', '2', ...(flag[0] === '-D' ? ['--socks5', `127.0.0.1:${port}`, `http://${ADDR.server}:80/`] : [`telnet://127.0.0.1:${port}`])], { allowFailure: true, timeout: 10_000 });
      await waitFor(`${flag[0]} refused`, async () => s.world.procs.log(name).includes('administratively prohibited'), { timeoutMs: 5000 });
      await s.world.stop(name);
    }
  });

  it('hostile names never reach a file: a clear message, exit 2, the state and live files unchanged', async () => {
    const s = stack!;
    const before = liveFiles(s);
    const count = (await s.ctl<unknown[]>(['list'])).json.length;
    for (const bad of ['evil\nname', 'a"b', 'a{b}', 'a;b', 'a b', 'café', 'x'.repeat(64), '-x']) {
      const r = await s.ctl(['add-subdomain', '--ports', 'http', '--name', bad], { allowFailure: true });
      expect(r.exitCode, bad).toBe(2);
      expect((r.json as { error: { code: string; message: string } }).error.code).toBe('bad_name');
    }
    const r = await s.ctl(['add-subdomain', '--ports', 'http,gopher'], { allowFailure: true });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain('"gopher" is not a service type');
    expect((await s.ctl<unknown[]>(['list'])).json.length).toBe(count);
    expect(liveFiles(s)).toEqual(before);
    const plan = await s.ctl<{ changed_units: string[] }>(['plan']);
    expect(plan.json.changed_units).toEqual([]);
  });

  it('nginx refusing the rendered nginx.conf leaves every live file as it was, and says which daemon and file', async () => {
    const s = stack!;
    const before = liveFiles(s);
    const config = fs.readFileSync(s.configFile, 'utf8');
    // A stream module path that does not exist: the rendered nginx.conf's load_module fails nginx -t.
    fs.writeFileSync(s.configFile, config.replace(/^http:\n/m, 'http:\n  stream_module: /nonexistent/ngx_stream_module.so\n'));
    try {
      await s.ctl(['add-subdomain', '--ports', 'http', '--name', 'refused-one', '--no-apply']);
      const r = await s.ctl<{ error: { code: string; daemon: string; file: string; checker_output: string } }>(['apply'], { allowFailure: true });
      expect(r.exitCode).toBe(6);
      expect(r.json.error.code).toBe('check_failed');
      expect(r.json.error.daemon).toMatch(/nginx/);
      expect(r.json.error.file).toMatch(/\.p2m-stage-\d+-[0-9a-f]+\/nginx\.conf$/);
      expect(r.json.error.checker_output).toContain('/nonexistent/ngx_stream_module.so');
      expect(r.stderr).toContain('nothing live was changed');
      // The other units checked fine, but nothing at all was renamed into place.
      expect(liveFiles(s)).toEqual(before);
      expect(fs.readdirSync(s.layout.nginx.dir).filter((f) => f.startsWith('.p2m-stage'))).toEqual([]);
    } finally {
      fs.writeFileSync(s.configFile, config);
      await s.ctl(['remove', 'refused-one']);
    }
    expect((await s.ctl(['apply'])).exitCode).toBe(0);
  });

  if (dns === 'bind') {
    it('named-checkconf refusing named.conf (its rndc key is gone) changes nothing live', async () => {
      const s = stack!;
      const before = liveFiles(s);
      const saved = fs.readFileSync(s.layout.bind.rndcKey);
      fs.rmSync(s.layout.bind.rndcKey);
      try {
        await s.ctl(['add-subdomain', '--ports', 'http', '--name', 'refused-two', '--no-apply']);
        const r = await s.ctl<{ error: { code: string; daemon: string } }>(['apply'], { allowFailure: true });
        expect(r.exitCode).toBe(6);
        expect(r.json.error.daemon).toMatch(/BIND/);
        expect(liveFiles(s)).toEqual(before);
      } finally {
        fs.writeFileSync(s.layout.bind.rndcKey, saved, { mode: 0o600 });
        await s.ctl(['remove', 'refused-two']);
      }
    });
  }

  it('a change is applied as a patch of the changed pods only, and a full apply renders the same files and has every daemon load them', async () => {
    const s = stack!;
    const soa = async () => (await dig(s.world, { server: ADDR.server, name: DOMAIN, type: 'SOA' })).answers[0]!.data.split(/\s+/)[2];
    const c = (await s.ctl<SubdomainJson>(['add-subdomain', '--ports', 'http', '--no-apply'])).json;
    const applied = await s.ctl<{ rendered: { path: string; mode: string; pods?: number }[]; reloads: { action: string; detail: string }[]; zone_serial: number }>(['apply']);
    // The per-pod files: the key index's manifest, nginx's entry map and its two SNI maps, the zone.
    expect(applied.json.rendered.length).toBe(5);
    // Patched, each with the pods it had not taken in yet (the key's registration applied the key index only).
    expect(applied.json.rendered.filter((h) => h.mode !== 'patched' || !h.pods || h.pods > 2)).toEqual([]);
    if (dns === 'bind') {
      // BIND takes the change as a dynamic update of exactly the new record (and the SOA), no zone reload.
      expect(applied.json.reloads).toContainEqual(expect.objectContaining({ action: 'dns-update', detail: 'dynamic update of 1 record(s)' }));
      expect(fs.existsSync(`${s.layout.bind.servedZone}.jnl`), "named's journal of the update").toBe(true);
    } else {
      expect(applied.json.reloads).toContainEqual(expect.objectContaining({ action: 'dns-reload-zone' }));
    }
    expect((await dig(s.world, { server: ADDR.server, name: c.fqdn })).answers.map((x) => x.data)).toEqual([ADDR.server]);
    expect(await soa()).toBe(String(applied.json.zone_serial));
    const before = liveFiles(s);
    const full = await s.ctl<{ rendered: { mode: string }[]; files: { change: string }[]; reloads: { action: string; detail: string }[] }>(['apply', '--full']);
    expect(full.json.rendered.every((h) => h.mode === 'whole')).toBe(true);
    // Whole, the files are byte for byte what the patches made.
    expect(full.json.files.every((f) => f.change === 'unchanged')).toBe(true);
    expect(liveFiles(s)).toEqual(before);
    expect(full.json.reloads.map((r) => r.action).sort()).toEqual(['dns-reload-zone', 'nginx-reload']);
    if (dns === 'bind') {
      expect(full.json.reloads.find((r) => r.action === 'dns-reload-zone')!.detail).toBe(`rndc freeze ${DOMAIN}, thaw ${DOMAIN}`);
      expect(fs.existsSync(`${s.layout.bind.servedZone}.jnl`), 'the journal went with the old copy').toBe(false);
    }
    expect((await dig(s.world, { server: ADDR.server, name: c.fqdn })).answers.map((x) => x.data)).toEqual([ADDR.server]);
    expect(await soa()).toBe(String(applied.json.zone_serial));
    await s.ctl(['remove', c.name]);
    await waitFor('the removed name is gone', async () => (await dig(s.world, { server: ADDR.server, name: c.fqdn })).status === 'NXDOMAIN', { timeoutMs: 5000 });
  });

  it('after remove, sshd, nginx and DNS have all forgotten the name, and its ports are free', async () => {
    const s = stack!;
    const ssh = new SshClient(s, keyA);
    await s.world.start({ name: 'alpha-hold', host: 'pod', argv: ssh.argv(['-N', '-R', `${a.ports[2]!.port}:127.0.0.1:9000`]) });
    await s.world.waitTcp('cli', ADDR.server, a.ports[2]!.port);
    const conns = path.join(s.layout.connsDir, a.name);
    expect(fs.existsSync(conns), 'the key lookup recorded the login').toBe(true);
    const r = await s.ctl<{ cut_sessions: number }>(['remove', 'alpha']);
    expect(r.json.cut_sessions).toBeGreaterThanOrEqual(1);
    // Nothing of its connection is left that could be read as online.
    expect(fs.existsSync(conns)).toBe(false);
    expect(fs.existsSync(path.join(s.layout.sessionsDir, a.name))).toBe(false);
    // The live session was cut: the port is closed at once.
    const closed = await curl(s.world, `telnet://${ADDR.server}:${a.ports[2]!.port}`, { timeoutMs: 2000 });
    expect(closed.error).toMatch(/refused|Failed to connect/i);
    const again = await ssh.attempt(['-N', '-R', `${a.ports[2]!.port}:127.0.0.1:9000`]);
    expect(again.output).toContain('Permission denied');
    expect((await curl(s.world, `http://${a.fqdn}/`, { resolve: [`${a.fqdn}:80:${ADDR.server}`] })).status).toBe(404);
    await waitFor('zone without alpha', async () => (await dig(s.world, { server: ADDR.server, name: a.fqdn })).status === 'NXDOMAIN', { timeoutMs: 5000 });
    const c = await s.ctl<SubdomainJson>(['add-subdomain', '--ports', 'http,https,tcp']);
    expect(c.json.ports.map((p) => p.port).sort()).toEqual(a.ports.map((p) => p.port).sort());
  });
});

describe('many at once', () => {
  let stack: Stack | undefined;
  beforeAll(async () => {
    stack = await Stack.create({ upnp: false });
    await stack.startServer();
  }, 180_000);
  afterAll(async () => {
    await stack?.destroy();
  });
  afterEach(dumpOnFailure(() => stack));

  it('20 add-subdomain processes at once get 20 distinct names and port sets, and one apply renders them all', async () => {
    const s = stack!;
    const results = await Promise.all(Array.from({ length: 20 }, () => s.ctl<SubdomainJson>(['add-subdomain', '--ports', 'http,https', '--no-apply'], { timeout: 120_000 })));
    const names = results.map((r) => r.json.name);
    const ports = results.flatMap((r) => r.json.ports.map((p) => p.port));
    expect(new Set(names).size).toBe(20);
    expect(new Set(ports).size).toBe(40);
    const applied = await s.ctl<{ changed_units: string[] }>(['apply']);
    expect(applied.json.changed_units).toEqual(expect.arrayContaining(['nginx', 'dns']));
    const map = fs.readFileSync(s.layout.nginx.entryMap, 'utf8');
    for (const r of results) expect(map).toContain(`\n${r.json.name} "http:${r.json.ports[0]!.port} https:${r.json.ports[1]!.port}";\n`);
    for (const n of names.slice(0, 3)) {
      const d = await dig(s.world, { server: ADDR.server, name: `${n}.${DOMAIN}` });
      expect(d.answers[0]?.data).toBe(ADDR.server);
    }
  });

  it('pods named like the parameters of an nginx map (default, include, hostnames, volatile) are keys of the entry map like any other: nginx takes the map and redirects each', async () => {
    const s = stack!;
    const words = ['default', 'include', 'hostnames', 'volatile'];
    const made = [];
    for (const w of words) made.push((await s.ctl<SubdomainJson>(['add-subdomain', '--ports', 'http,https', '--name', w, '--no-apply'])).json);
    const applied = await s.ctl<{ changed_units: string[] }>(['apply']);
    expect(applied.exitCode).toBe(0);
    expect(applied.json.changed_units).toContain('nginx');
    const map = fs.readFileSync(s.layout.nginx.entryMap, 'utf8');
    for (const m of made) {
      expect(map).toContain(`\n\\${m.name} "http:${m.ports[0]!.port} https:${m.ports[1]!.port}";\n`);
      const r = await curl(s.world, `http://${m.fqdn}/a`, { resolve: [`${m.fqdn}:80:${ADDR.server}`] });
      expect([r.status, r.location], m.name).toEqual([302, `http://${m.fqdn}:${m.ports[0]!.port}/a`]);
    }
    // And a patch of the map (one of them removed) is taken as well.
    expect((await s.ctl(['remove', 'default'])).exitCode).toBe(0);
    const gone = await curl(s.world, `http://default.${DOMAIN}/`, { resolve: [`default.${DOMAIN}:80:${ADDR.server}`] });
    expect(gone.status).toBe(404);
    expect((await curl(s.world, `http://include.${DOMAIN}/`, { resolve: [`include.${DOMAIN}:80:${ADDR.server}`] })).status).toBe(302);
  });
});
