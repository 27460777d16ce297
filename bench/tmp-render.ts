import { loadConfig } from '../src/config/load.js';
import { openDb } from '../src/state/db.js';
import { listSubdomains } from '../src/state/subdomains.js';
import { renderAll } from '../src/render/render.js';
const c = loadConfig('/run/p2mprof/pipe2me.yml');
const db = openDb(c.paths.state);
for (let i = 0; i < 4; i++) {
  let t = performance.now();
  const subs = listSubdomains(db);
  const tl = performance.now() - t; t = performance.now();
  const files = renderAll(c, subs);
  console.log(`list ${tl.toFixed(0)} ms, render ${(performance.now() - t).toFixed(0)} ms, ${files.length} files`);
}
