/**
 * Applying safely, with the real daemons' files: a kill at any moment never leaves a half-written file,
 * `plan` touches nothing, a missing program is named with its package, and `watch` re-applies on its own.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ADDR, curl, waitFor } from '../world/index.js';
import { CTL, DOMAIN } from '../stack/stack.js';
import { useStack } from '../stack/hooks.js';

function snapshot(dirs: string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const d of dirs) for (const f of fs.readdirSync(d)) {
    const p = path.join(d, f);
    if (fs.statSync(p).isFile()) out.set(p, fs.readFileSync(p, 'utf8'));
  }
  return out;
}

const stack = useStack({ upnp: false }, async (stack) => {
  await stack.startServer();
}, 180_000);

describe('apply', () => {
  it('plan shows a pending change as a diff and touches nothing', async () => {
    const s = stack();
    const L = s.layout;
    const dirs = [L.sshd.dir, L.nginx.dir, L.bind.dir];
    const before = snapshot(dirs);
    const added = (await s.ctl<{ fqdn: string; ports: { port: number }[] }>(['add-subdomain', '--ports', 'http', '--name', 'pending', '--no-apply'])).json;
    const p = await s.ctl<{ changed_units: string[]; diff: string }>(['plan']);
    expect(p.json.changed_units.sort()).toEqual(['dns', 'nginx']);
    expect(p.json.diff).toContain(`+pending "http:${added.ports[0]!.port}";`);
    expect(p.json.diff).toContain(`+${added.fqdn}. 30 IN A ${ADDR.server}`);
    expect(snapshot(dirs)).toEqual(before);
    const human = await s.ctl(['plan'], { json: false });
    expect(human.stdout).toMatch(/^--- .*\/entry\.map/m);
    expect(human.stdout).toContain('would reload: nginx-reload');
    await s.ctl(['apply']);
  });

  it('a kill at any moment leaves every live file either as it was or as it should be, never half-written', async () => {
    const s = stack();
    const L = s.layout;
    const dirs = [L.sshd.dir, L.nginx.dir, L.bind.dir];
    for (let round = 0; round < 8; round++) {
      const before = snapshot(dirs);
      await s.ctl(['add-subdomain', '--ports', 'http,https', '--no-apply']);
      // What a complete apply would write: plan it now (plan touches nothing).
      const child = spawn('ip', ['netns', 'exec', s.world.ns('srv'), process.execPath, CTL, '-c', s.configFile, '-q', 'apply'], { stdio: 'ignore' });
      // Listen before anything can happen: an 'exit' emitted before the listener is attached is lost.
      const exited = new Promise((r) => child.once('exit', r));
      await new Promise((r) => setTimeout(r, 150 + round * 60));
      child.kill('SIGKILL');
      await exited;
      const after = snapshot(dirs);
      await s.ctl(['apply']);
      const complete = snapshot(dirs);
      for (const [file, content] of after) {
        if (path.basename(file).startsWith('.')) continue; // a killed apply's staging files are private to it
        const old = before.get(file);
        expect(content === old || content === complete.get(file), `${file} after a kill in round ${round} is neither the old nor the new version`).toBe(true);
      }
      // The next apply swept the killed one's staging directory.
      for (const d of dirs) expect(fs.readdirSync(d).filter((f) => f.startsWith('.p2m-stage'))).toEqual([]);
    }
    // And the daemons serve the result.
    const r = await curl(s.world, `http://pending.${DOMAIN}/`, { resolve: [`pending.${DOMAIN}:80:${ADDR.server}`] });
    expect(r.status).toBe(302);
  }, 180_000);

  it('a missing program is named with the Debian package to install', async () => {
    const s = stack();
    await s.ctl(['add-subdomain', '--ports', 'tcp', '--no-apply']);
    const r = await s.world.inNs('srv', ['env', 'PATH=/nonexistent', process.execPath, CTL, '-c', s.configFile, 'apply'], { allowFailure: true, timeout: 60_000 });
    expect(r.exitCode).toBe(7);
    expect(r.stderr).toMatch(/error: (named-checkconf|named-checkzone|ssh-keygen|openssl) is not installed/);
    expect(r.stderr).toMatch(/hint: Install it: apt-get install (bind9-utils|openssh-client|openssl)/);
    await s.ctl(['apply']);
  });
});

describe('watch', () => {
  beforeAll(async () => {
    await stack().world.start({
      name: 'watch', host: 'srv', argv: [process.execPath, CTL, '-c', stack().configFile, 'watch', '--debounce', '200', '--verbose'],
      ready: (d, p) => p.waitLog(d.name, 'watching').then(() => undefined),
    });
  });

  it('re-applies by itself when the state changes', async () => {
    const s = stack();
    const added = (await s.ctl<{ fqdn: string; ports: { port: number }[] }>(['add-subdomain', '--ports', 'http', '--no-apply'])).json;
    const t0 = performance.now();
    await waitFor('watch applied it', async () => {
      const r = await curl(s.world, `http://${added.fqdn}/`, { resolve: [`${added.fqdn}:80:${ADDR.server}`] });
      return r.status === 302;
    }, { timeoutMs: 10_000, intervalMs: 100 });
    console.log(`watch: a new subdomain was live ${((performance.now() - t0) / 1000).toFixed(2)} s after add-subdomain --no-apply returned`);
  });

  it('keeps the last good configuration when the file becomes invalid, and picks up the next good one', async () => {
    const s = stack();
    const good = fs.readFileSync(s.configFile, 'utf8');
    fs.writeFileSync(s.configFile, good + '\nbogus_key: 1\n');
    await waitFor('watch reports the bad file', async () => s.world.procs.log('watch').includes('unknown key "bogus_key"'), { timeoutMs: 10_000 });
    expect(s.world.procs.get('watch').running).toBe(true);
    fs.writeFileSync(s.configFile, good.replace(/redirect_status: \d+|(^http:\n)/m, (m, h) => (h ? 'http:\n  redirect_status: 301\n' : m)));
    await waitFor('301 served', async () => {
      const r = await curl(s.world, `http://pending.${DOMAIN}/`, { resolve: [`pending.${DOMAIN}:80:${ADDR.server}`] });
      return r.status === 301;
    }, { timeoutMs: 10_000, intervalMs: 200 });
    fs.writeFileSync(s.configFile, good);
  });
});
