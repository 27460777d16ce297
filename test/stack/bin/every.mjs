#!/usr/bin/env node
// A stand-in for the probe's systemd timer in the test world: runs ARGV every SECONDS, one run at a time,
// and logs when each run started and how it ended. Usage: every.mjs SECONDS ARGV...
import { spawn } from 'node:child_process';

const [seconds, ...argv] = process.argv.slice(2);
let stopping = false;
process.on('SIGTERM', () => { stopping = true; process.exit(0); });
for (;;) {
  const started = Date.now();
  console.log(`${new Date().toISOString()} run`);
  const code = await new Promise((resolve) => {
    const c = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'inherit', 'inherit'] });
    const t = setTimeout(() => c.kill('SIGKILL'), 120_000);
    c.on('exit', (code) => { clearTimeout(t); resolve(code); });
  });
  console.log(`${new Date().toISOString()} exit ${code}`);
  if (stopping) break;
  await new Promise((r) => setTimeout(r, Math.max(0, Number(seconds) * 1000 - (Date.now() - started))));
}
