/**
 * The upgrade path: the state store is migrated when any command opens it, and a store written by a
 * newer pipe2me is refused (exit 3, a message that says so and what to do) without being changed.
 * Runs the real CLI (bin/pipe2me-ctl.js) on stores made here with SQLite.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SCHEMA_VERSION } from '../../src/state/migrations.js';
import { ROOT, exec } from './helpers.js';

const CTL = path.join(ROOT, 'bin', 'pipe2me-ctl.js');
let tmp: string;

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'p2m-ops-upgrade-'));
});

afterAll(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

/** A configuration whose every path is under its own directory; no daemon, user or key is needed to open the store. */
function server(name: string): { config: string; stateDb: string } {
  const dir = path.join(tmp, name);
  const paths = Object.fromEntries(['state', 'ca', 'sshd', 'nginx', 'dns', 'run', 'log'].map((p) => [p, path.join(dir, p)]));
  fs.mkdirSync(paths.state!, { recursive: true, mode: 0o700 });
  const config = path.join(dir, 'pipe2me.yml');
  fs.writeFileSync(config, [
    'domain: pipe.test',
    'server: {ipv4: 127.0.0.1}',
    'paths:',
    ...Object.entries(paths).map(([k, v]) => `  ${k}: ${v}`),
    '',
  ].join('\n'));
  return { config, stateDb: path.join(paths.state!, 'state.db') };
}

function userVersion(file: string): number {
  const db = new Database(file, { readonly: true });
  try {
    return db.pragma('user_version', { simple: true }) as number;
  } finally {
    db.close();
  }
}

describe('state store upgrades and downgrades', () => {
  it('a store written by a newer pipe2me is refused with exit 3 and left as it was', async () => {
    const s = server('newer');
    const db = new Database(s.stateDb);
    // As pipe2me writes its stores: in WAL mode.
    db.pragma('journal_mode = WAL');
    db.exec('CREATE TABLE from_the_future (x INTEGER)');
    db.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
    db.close();
    const before = fs.readFileSync(s.stateDb);

    for (const args of [['list'], ['apply', '--dry-run'], ['serve']]) {
      const r = await exec(process.execPath, [CTL, '--config', s.config, ...args], 60_000);
      expect(r.exitCode, `${args.join(' ')}: ${r.output}`).toBe(3);
      expect(r.stderr).toContain(`has schema version ${SCHEMA_VERSION + 1}, but this pipe2me knows only up to version ${SCHEMA_VERSION}`);
      expect(r.stderr).toMatch(/written by a newer pipe2me/);
      expect(r.stderr).toMatch(/Install that newer pipe2me again .* or restore a backup/);
    }
    const json = await exec(process.execPath, [CTL, '--config', s.config, '--json', 'list'], 60_000);
    expect(json.exitCode).toBe(3);
    expect(JSON.parse(json.stdout).error.code).toBe('state_too_new');

    expect(userVersion(s.stateDb)).toBe(SCHEMA_VERSION + 1);
    expect(fs.readFileSync(s.stateDb).equals(before)).toBe(true);
  });

  it('an older store is migrated to the current schema by the first command that opens it', async () => {
    const s = server('older');
    // Version 0: a store from before the first migration (an empty SQLite file).
    new Database(s.stateDb).close();
    expect(userVersion(s.stateDb)).toBe(0);

    const r = await exec(process.execPath, [CTL, '--config', s.config, '--json', 'list'], 60_000);
    expect(r.exitCode, r.output).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual([]);
    expect(userVersion(s.stateDb)).toBe(SCHEMA_VERSION);

    const db = new Database(s.stateDb, { readonly: true });
    const tables = (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all() as { name: string }[]).map((t) => t.name);
    db.close();
    expect(tables).toEqual(expect.arrayContaining(['meta', 'subdomains', 'ports', 'ssh_keys', 'certificates', 'tokens', 'mappings', 'probe_results']));

    // Opening it again changes nothing: migrations run once.
    const again = await exec(process.execPath, [CTL, '--config', s.config, '--json', 'list'], 60_000);
    expect(again.exitCode).toBe(0);
    expect(userVersion(s.stateDb)).toBe(SCHEMA_VERSION);
  });
});
