/** What every server-side command works with: the validated configuration, its layout and the state store. */
import { loadConfig } from '../config/load.js';
import type { Config } from '../config/types.js';
import { layout, type Layout } from '../render/layout.js';
import { openDb, type Db } from '../state/db.js';

export interface ServerContext {
  config: Config;
  layout: Layout;
  db: Db;
}

export function openServer(configFile: string): ServerContext {
  const config = loadConfig(configFile);
  const L = layout(config);
  return { config, layout: L, db: openDb(L.stateDir) };
}

export function closeServer(ctx: ServerContext): void {
  ctx.db.close();
}
