/**
 * What every server-side command works with: the validated configuration, its layout and the state store.
 *
 * The configuration is live: every read of `config` or `layout` first looks whether the file changed
 * (one stat) and, if so, loads it again. A long-running process (the API, the watcher, a long probe)
 * therefore renders from the configuration as it is now, never from the copy it started with — an apply
 * from a stale copy would revert the operator's change in the daemons' files. A file that does not
 * validate leaves the last good configuration in place, and that is said once per version of the file
 * (and shown by `stale`), so nothing runs on a configuration that was refused.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { parseConfigText } from '../config/load.js';
import type { Config } from '../config/types.js';
import { layout, type Layout } from '../render/layout.js';
import { openStore, type Store, type StoreTarget } from '../state/db.js';
import { ConfigError } from '../util/errors.js';

export interface ServerContext {
  readonly config: Config;
  readonly layout: Layout;
  readonly db: Store;
}

export interface StaleConfig {
  /** Why the file on disk is not the configuration in use. */
  problem: string;
  /** When the file that does not validate was first seen (ISO). */
  since: string;
}

interface Loaded {
  config: Config;
  layout: Layout;
  hash: string;
  loadedAt: string;
}

function readConfig(file: string): { text: string; stamp: string } {
  let st: fs.Stats;
  let text: string;
  try {
    st = fs.statSync(file);
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new ConfigError(`No configuration at ${file}.`, {
        hint: 'Create one with `pipe2me-ctl init --domain pipe.example.com --ipv4 198.51.100.10`, or pass --config FILE (or set PIPE2ME_CONFIG).',
      });
    }
    throw new ConfigError(`Cannot read ${file}: ${(e as Error).message}`);
  }
  return { text, stamp: `${st.ino}:${st.size}:${st.mtimeMs}` };
}

export class LiveServer implements ServerContext {
  private loaded: Loaded;
  private stamp: string;
  private handle!: Store;
  private problem: StaleConfig | null = null;

  private constructor(readonly file: string, private readonly log: (m: string) => void) {
    const { text, stamp } = readConfig(file);
    const config = parseConfigText(text, file);
    this.loaded = { config, layout: layout(config), hash: hashOf(text), loadedAt: new Date().toISOString() };
    this.stamp = stamp;
  }

  static async open(file: string, log: (m: string) => void = (m) => process.stderr.write(`${m}\n`)): Promise<LiveServer> {
    const live = new LiveServer(file, log);
    live.handle = await openStore(storeTargetOf(live.loaded.config));
    return live;
  }

  get config(): Config {
    this.refresh();
    return this.loaded.config;
  }

  get layout(): Layout {
    this.refresh();
    return this.loaded.layout;
  }

  get db(): Store {
    return this.handle;
  }

  /** The file on disk does not validate and the last good configuration is in use (null when all is well). */
  get stale(): StaleConfig | null {
    this.refresh();
    return this.problem;
  }

  /** Loads the file again if it changed. Returns whether the configuration in use changed. */
  refresh(): boolean {
    let read: { text: string; stamp: string };
    try {
      const st = fs.statSync(this.file);
      if (`${st.ino}:${st.size}:${st.mtimeMs}` === this.stamp) return false;
      read = readConfig(this.file);
    } catch (e) {
      return this.keep(`the file cannot be read: ${(e as Error).message}`, '');
    }
    const hash = hashOf(read.text);
    if (hash === this.loaded.hash) {
      this.stamp = read.stamp;
      if (this.problem) this.log(`${this.file} is valid again; using it`);
      this.problem = null;
      return false;
    }
    let config: Config;
    try {
      config = parseConfigText(read.text, this.file);
    } catch (e) {
      return this.keep((e as Error).message, read.stamp);
    }
    const next: Loaded = { config, layout: layout(config), hash, loadedAt: new Date().toISOString() };
    if (next.layout.stateDir !== this.loaded.layout.stateDir || next.config.state.url !== this.loaded.config.state.url) {
      // Switching stores under a running process would close the handle an apply in flight is reading.
      return this.keep('paths.state or state.url changed: a running process keeps its state store; restart it (pipe2me-ctl serve, watch) to use the new one', read.stamp);
    }
    this.loaded = next;
    this.stamp = read.stamp;
    this.problem = null;
    this.log(`configuration reloaded from ${this.file} (${config.domain})`);
    return true;
  }

  private keep(problem: string, stamp: string): false {
    // Said once per problem, not at every read.
    if (this.problem?.problem !== problem) {
      this.log(`${this.file} is not used, the last good configuration (loaded ${this.loaded.loadedAt}) is kept: ${problem}`);
      this.problem = { problem, since: new Date().toISOString() };
    }
    if (stamp) this.stamp = stamp;
    return false;
  }

  async close(): Promise<void> {
    await this.handle.close();
  }
}

function hashOf(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

export function openServer(configFile: string, log?: (m: string) => void): Promise<LiveServer> {
  return LiveServer.open(configFile, log);
}

/**
 * How to reach the store this configuration names. The PostgreSQL password comes from state.password_file
 * (which must not be readable by others) or PGPASSWORD — never from the URL, a command line or a log.
 */
export function storeTargetOf(config: Config): StoreTarget {
  const st = config.state;
  let password: string | undefined;
  if (st.password_file) {
    let mode: number;
    try {
      mode = fs.statSync(st.password_file).mode & 0o777;
      password = fs.readFileSync(st.password_file, 'utf8').replace(/\r?\n$/, '');
    } catch (e) {
      throw new ConfigError(`state.password_file ${st.password_file} cannot be read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, {
        hint: 'Create it with the PostgreSQL password on one line, mode 0600, owned by the user pipe2me runs as.',
      });
    }
    if ((mode & 0o077) !== 0) {
      throw new ConfigError(`state.password_file ${st.password_file} is readable by others (mode ${mode.toString(8)}).`, { hint: `chmod 600 ${st.password_file}` });
    }
  } else if (process.env.PGPASSWORD) {
    password = process.env.PGPASSWORD;
  }
  return {
    stateDir: config.paths.state,
    url: st.url,
    password,
    pool: { max: st.pool_size, connectTimeoutMs: st.connect_timeout_ms, statementTimeoutMs: st.statement_timeout_ms },
  };
}

/** One configuration for the whole of an operation (an apply must not mix two). */
export function snapshot(ctx: ServerContext): ServerContext {
  return { config: ctx.config, layout: ctx.layout, db: ctx.db };
}

export async function closeServer(ctx: ServerContext): Promise<void> {
  if (ctx instanceof LiveServer) await ctx.close();
  else await ctx.db.close();
}

/** The same context on another handle of the store: a transaction's, for work that must be inside it. */
export function onStore(ctx: ServerContext, db: Store): ServerContext {
  return { config: ctx.config, layout: ctx.layout, db };
}
