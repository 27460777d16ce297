/**
 * `pipe2me-ctl init --state-url`: a new configuration whose state store is PostgreSQL. A URL that is not
 * PostgreSQL's, or that carries a password, is refused before anything is written, and the password is
 * never echoed; a good one ends up in the configuration as written (quoted), with the password file.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseConfigText } from '../../src/config/load.js';
import { newConfigText } from '../../src/server/init.js';

const CTL = path.join(import.meta.dirname, '..', '..', 'bin', 'pipe2me-ctl.js');
let dir: string;

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'p2m-init-state-'));
});
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

/** init with a refused --state-url: the refusal comes before anything is made (no file, no user, no directory). */
function init(...extra: string[]) {
  const config = path.join(dir, 'pipe2me.yml');
  return { config, r: spawnSync(process.execPath, [CTL, '-c', config, 'init', '--domain', 'pipe.test', '--ipv4', '192.0.2.10', ...extra], { encoding: 'utf8', timeout: 30_000 }) };
}

describe('init --state-url', () => {
  it('refuses a URL with a password, says where the password goes, and writes nothing', () => {
    const { config, r } = init('--state-url', 'postgres://pipe2me:hunter2secret@db1:5432/pipe2me');
    expect(r.status).toBe(3);
    expect(r.stderr).toMatch(/password/i);
    expect(r.stderr).toMatch(/password_file|PGPASSWORD/);
    expect(r.stderr + r.stdout).not.toContain('hunter2secret');
    expect(fs.existsSync(config)).toBe(false);
  });

  it('refuses what is not a PostgreSQL URL (exit 2), writing nothing', () => {
    const { config, r } = init('--state-url', 'mysql://db1/pipe2me');
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/--state-url must be a postgres:\/\/ URL/);
    expect(fs.existsSync(config)).toBe(false);
  });

  it('writes the URL and the password file into the new configuration', () => {
    // The text init writes (init itself would go on to make users and directories on this machine).
    const url = 'postgres://pipe2me@db1.example.net:5432,db2.example.net:5432/pipe2me?target_session_attrs=read-write&connect_timeout=2';
    const file = path.join(dir, 'pipe2me.yml');
    const c = parseConfigText(newConfigText({ configFile: file, domain: 'pipe.test', ipv4: '192.0.2.10', stateUrl: url, statePasswordFile: '/etc/pipe2me/db.password' }), file);
    expect(c.state.url).toBe(url);
    expect(c.state.password_file).toBe('/etc/pipe2me/db.password');
    expect(parseConfigText(newConfigText({ configFile: file, domain: 'pipe.test', ipv4: '192.0.2.10' }), file).state.url).toBeUndefined();
  });
});
