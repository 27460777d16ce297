/**
 * The playbook passes ansible-lint (production profile) and ansible-playbook --syntax-check. Each
 * check also runs on a broken copy, which it must refuse: a linter that passes anything fails here.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ANSIBLE_DIR, exec } from './helpers.js';

let tmp: string;
let env: Record<string, string>;

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'p2m-ops-ansible-'));
  // Ansible's and ansible-lint's caches and temp files stay in this test's directory.
  env = { ANSIBLE_HOME: path.join(tmp, 'home'), ANSIBLE_LOCAL_TEMP: path.join(tmp, 'tmp'), ANSIBLE_NOCOLOR: '1', NO_COLOR: '1', XDG_CACHE_HOME: path.join(tmp, 'cache') };
});

afterAll(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

function copyAnsible(): string {
  const dir = path.join(tmp, `copy-${Math.random().toString(36).slice(2)}`);
  fs.cpSync(ANSIBLE_DIR, dir, { recursive: true, filter: (src) => !src.includes(`${path.sep}.build`) });
  return dir;
}

describe('Ansible playbook', () => {
  it('passes ansible-lint', async () => {
    const r = await exec('ansible-lint', ['--offline', 'site.yml'], 5 * 60_000, { env, cwd: ANSIBLE_DIR });
    expect(r.output).toMatch(/Passed with production profile: 0 failure\(s\), 0 warning\(s\)/);
    expect(r.exitCode).toBe(0);
  });

  it('ansible-lint refuses a shell task', async () => {
    const dir = copyAnsible();
    const tasks = path.join(dir, 'roles', 'server', 'tasks', 'main.yml');
    fs.appendFileSync(tasks, '\n- name: Apply through a shell\n  ansible.builtin.shell: pipe2me-ctl apply | tee /tmp/x\n');
    const r = await exec('ansible-lint', ['--offline', 'site.yml'], 5 * 60_000, { env, cwd: dir });
    expect(r.exitCode).not.toBe(0);
    expect(r.output).toMatch(/risky-shell-pipe|no-changed-when|command-instead-of-shell/);
  });

  it('passes ansible-playbook --syntax-check with the example inventories (one server; two relays and PostgreSQL)', async () => {
    for (const inventory of ['inventory.example.yml', 'inventory.relays.example.yml']) {
      const r = await exec('ansible-playbook', ['--syntax-check', '-i', inventory, 'site.yml'], 2 * 60_000, { env, cwd: ANSIBLE_DIR });
      expect(r.exitCode, r.output).toBe(0);
      expect(r.stdout).toMatch(/playbook: site\.yml/);
    }
  });

  it('--syntax-check refuses a broken playbook', async () => {
    const dir = copyAnsible();
    fs.appendFileSync(path.join(dir, 'site.yml'), '\n- name: Broken\n  hosts: server\n  roles:\n    - role: no-such-role\n');
    const r = await exec('ansible-playbook', ['--syntax-check', '-i', 'inventory.example.yml', 'site.yml'], 2 * 60_000, { env, cwd: dir });
    expect(r.exitCode).not.toBe(0);
    expect(r.output).toMatch(/no-such-role/);
  });
});
