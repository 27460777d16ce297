/**
 * What the playbook tests share: running ansible-playbook into Debian roots over the chroot connection
 * (an inventory of roots, the recap, the tasks that changed), and a root as the playbook installed it —
 * its units started the way systemd would as far as that is possible without systemd (each unit's user,
 * capability bounding set and no-new-privileges applied by setpriv), its commands run as root, inside a
 * network namespace of the test.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  ANSIBLE_DIR, Background, DebianRoot, Netns, StepLog, exec, execArgv, must, one, parseUnit, readEnvironmentFile, setprivArgs, type UnitFile,
} from './helpers.js';

const MIN = 60_000;

export interface Recap {
  ok: number;
  changed: number;
  unreachable: number;
  failed: number;
}

/** The PLAY RECAP of one host, or the sum over every host. */
export function recap(output: string): Recap {
  const all = [...output.matchAll(/^\S+\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)/gm)];
  if (!all.length) throw new Error(`no PLAY RECAP in:\n${output.slice(-4000)}`);
  const sum: Recap = { ok: 0, changed: 0, unreachable: 0, failed: 0 };
  for (const m of all) {
    sum.ok += Number(m[1]);
    sum.changed += Number(m[2]);
    sum.unreachable += Number(m[3]);
    sum.failed += Number(m[4]);
  }
  return sum;
}

/** Which tasks reported a change (for the message when a run that should change nothing did). */
export function changedTasks(output: string): string[] {
  const out: string[] = [];
  let task = '';
  for (const line of output.split('\n')) {
    const t = /^(?:TASK|RUNNING HANDLER) \[(.+?)\]/.exec(line);
    if (t) task = t[1]!;
    else if (/^changed:/.test(line)) out.push(`${task}: ${line}`);
  }
  return out;
}

/** An inventory of roots (each host is a root's directory, reached by chroot), as JSON (which is YAML). */
export function writeInventory(file: string, groups: Record<string, Record<string, Record<string, unknown>>>, vars: Record<string, unknown>): string {
  const inv: Record<string, unknown> = { all: { vars: { ansible_connection: 'community.general.chroot', ...vars } } };
  for (const [g, hosts] of Object.entries(groups)) inv[g] = { hosts };
  fs.writeFileSync(file, JSON.stringify(inv, null, 2));
  return file;
}

/** Caches and temp files of Ansible (and npm, for the release) inside the test's directory. */
export function ansibleEnv(tmp: string): Record<string, string> {
  return {
    ANSIBLE_HOME: path.join(tmp, 'ansible-home'),
    ANSIBLE_LOCAL_TEMP: path.join(tmp, 'ansible-tmp'),
    ANSIBLE_NOCOLOR: '1',
    ANSIBLE_FORCE_COLOR: '0',
    npm_config_cache: path.join(tmp, 'npm-cache'),
    npm_config_update_notifier: 'false',
    // Each task's time in the kept output (the slowest listed at the end): where a slow run spent it.
    ANSIBLE_CALLBACKS_ENABLED: 'ansible.posix.profile_tasks',
  };
}

/** Runs site.yml (in the namespace if given: no network there but its own); its output is kept in tmp. */
export async function playbook(o: { what: string; inventory: string; tmp: string; steps: StepLog; ns?: Netns; args?: string[] }): Promise<{ recap: Recap; output: string }> {
  const argv = ['ansible-playbook', '-i', o.inventory, 'site.yml', ...(o.args ?? [])];
  const full = o.ns ? o.ns.argv(argv) : argv;
  const r = await o.steps.timed(o.what, () => exec(full[0]!, full.slice(1), 15 * MIN, { env: ansibleEnv(o.tmp), cwd: ANSIBLE_DIR }));
  fs.writeFileSync(path.join(o.tmp, `${o.what.replace(/\W+/g, '-')}.log`), r.output);
  if (r.exitCode !== 0) throw new Error(`${o.what} failed (exit ${r.exitCode}):\n${r.stdout.slice(-6000)}\n${r.stderr.slice(-2000)}`);
  return { recap: recap(r.stdout), output: r.stdout };
}

/** A root the playbook installed, entered in a network namespace. */
export class InstalledRoot {
  constructor(readonly root: DebianRoot, readonly ns: Netns, private readonly tmp: string, private readonly daemons: Background[]) {}

  path(p: string): string {
    return path.join(this.root.dir, p);
  }

  /** An installed unit (a template's instance by its template). */
  unit(name: string): UnitFile {
    const base = name.replace(/@[^.]+\./, '@.');
    return parseUnit(fs.readFileSync(this.path(`etc/systemd/system/${base}`), 'utf8'));
  }

  unitArgv(u: UnitFile, line: string, instance?: string): string[] {
    const envFile = one(u, 'Service.EnvironmentFile')?.replace(/^-/, '').replace(/%i/g, instance ?? '');
    const environment = envFile ? readEnvironmentFile(this.path(envFile)) : {};
    const argv = execArgv(line, { ...(instance !== undefined ? { instance } : {}), env: environment });
    // systemd runs a "+" line with full privileges, outside the unit's restrictions.
    if (/^[-@!:]*\+/.test(line)) return this.ns.argv(['chroot', this.root.dir, ...argv]);
    return this.ns.argv(['chroot', this.root.dir, '/usr/bin/setpriv', ...setprivArgs(u), '--', ...argv]);
  }

  /** Runs a unit's ExecStartPre= lines, then its ExecStart= (to completion for Type=forking, else in the background). */
  async startUnit(name: string, instance?: string): Promise<Background | undefined> {
    const u = this.unit(name);
    const rt = one(u, 'Service.RuntimeDirectory');
    if (rt) fs.mkdirSync(this.path(`run/${rt}`), { recursive: true, mode: 0o755 });
    for (const pre of u.get('Service.ExecStartPre') ?? []) {
      const argv = this.unitArgv(u, pre, instance);
      await must(argv[0]!, argv.slice(1), MIN);
    }
    const argv = this.unitArgv(u, one(u, 'Service.ExecStart')!, instance);
    if (one(u, 'Service.Type') === 'forking') {
      await must(argv[0]!, argv.slice(1), MIN);
      return undefined;
    }
    return this.background(name, argv);
  }

  /** A process of the test's, in the background, stopped by the test's cleanup. */
  background(name: string, argv: string[]): Background {
    const d = new Background(name, argv, path.join(this.tmp, `${path.basename(this.root.dir)}-${name}.log`));
    this.daemons.push(d);
    return d;
  }

  /** A command in the installed root, in the namespace, as root (the operator at a shell). */
  ctl(args: string[], timeoutMs = MIN) {
    const argv = this.ns.argv(['chroot', this.root.dir, '/usr/local/bin/pipe2me-ctl', ...args]);
    return exec(argv[0]!, argv.slice(1), timeoutMs);
  }
}
