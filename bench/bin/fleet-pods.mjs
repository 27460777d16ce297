#!/usr/bin/env node
// Simulated pods for the fleet benchmark: runs one tunnel per pod of a manifest, each with the pod's own
// argv (`ssh …` as tunnelArgv builds it, or the whole `autossh …` with the pod's ssh wrapper), its stdin an
// open pipe that is never written to (the server's session holder ends on EOF) and its stdout watched for the
// session holder's "pipe2me-session: online NAME" line, as `pipe2me start` does.
//
//   node fleet-pods.mjs MANIFEST.json CONCURRENCY
//
// MANIFEST: { "pods": [{ "index": 0, "argv": [...], "env": {...}, "state": "/path/backoff" | null, "next": "/path/relay-next" (relays only) }] }.
// At most CONCURRENCY pods are starting (spawned, never online yet) at once, so that the bring-up stays below
// sshd's MaxStartups; the pods behind one NAT address are also one source to PerSourceMaxStartups. With a
// state file (the ssh wrapper's backoff state), the pod behaves like `pipe2me start`: "now" before its first
// attempt, and when a session comes up the value found there (the attempts since the last reset) is printed
// and replaced by 0.
//
// Prints one line per event (epoch ms): "online I AT [ATTEMPTS]", "stderr I AT TEXT", "exit I AT CODE SIGNAL",
// "progress ONLINE/TOTAL starting N" every 2 s, "all-online AT" once every pod has been online, and
// "started" once it runs. SIGTERM ends every pod (they share this process group) and then this process.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as readline from 'node:readline';

const [manifestFile, concurrencyText] = process.argv.slice(2);
const manifest = JSON.parse(fs.readFileSync(manifestFile, 'utf8'));
const concurrency = Math.max(1, Number(concurrencyText) || 16);
const pods = manifest.pods;
const children = new Map();
const everOnline = new Set();
let next = 0;
let starting = 0;
let stopping = false;
let announcedAll = false;

const out = (line) => process.stdout.write(`${line}\n`);

function writeState(file, value) {
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, `${value}\n`, { mode: 0o600 });
  fs.renameSync(tmp, file);
}

function readState(file) {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    return '';
  }
}

function launch(pod) {
  if (pod.state) writeState(pod.state, 'now');
  // With relays, as `pipe2me start` does: the first attempt goes to the pod's home relay (the first of its
  // list), whichever relay a run before this one left it on.
  if (pod.next) writeState(pod.next, '0');
  const child = spawn(pod.argv[0], pod.argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...(pod.env ?? {}) } });
  children.set(pod.index, child);
  starting++;
  let counted = true;
  const settle = () => {
    if (counted) {
      counted = false;
      starting--;
      fill();
    }
  };
  child.on('error', (e) => {
    out(`stderr ${pod.index} ${Date.now()} spawn error: ${e.message}`);
  });
  child.stdin.on('error', () => {});
  readline.createInterface({ input: child.stdout }).on('line', (line) => {
    if (!/^pipe2me-session: online /.test(line)) return;
    const at = Date.now();
    if (pod.state) {
      const n = readState(pod.state);
      writeState(pod.state, '0');
      out(`online ${pod.index} ${at} ${n}`);
    } else {
      out(`online ${pod.index} ${at}`);
    }
    everOnline.add(pod.index);
    settle();
    if (!announcedAll && everOnline.size === pods.length) {
      announcedAll = true;
      out(`all-online ${at}`);
    }
  });
  readline.createInterface({ input: child.stderr }).on('line', (line) => {
    const text = line.trim();
    if (text) out(`stderr ${pod.index} ${Date.now()} ${text.slice(0, 240)}`);
  });
  child.on('exit', (code, signal) => {
    children.delete(pod.index);
    out(`exit ${pod.index} ${Date.now()} ${code} ${signal}`);
    settle();
  });
}

function fill() {
  while (!stopping && starting < concurrency && next < pods.length) launch(pods[next++]);
}

const ticker = setInterval(() => out(`progress ${everOnline.size}/${pods.length} starting ${starting}`), 2000);

function stop() {
  if (stopping) return;
  stopping = true;
  clearInterval(ticker);
  for (const c of children.values()) {
    try {
      c.kill('SIGTERM');
    } catch {
      /* gone */
    }
  }
  const deadline = Date.now() + 3000;
  const wait = setInterval(() => {
    if (children.size === 0 || Date.now() > deadline) {
      for (const c of children.values()) {
        try {
          c.kill('SIGKILL');
        } catch {
          /* gone */
        }
      }
      clearInterval(wait);
      process.exit(0);
    }
  }, 20);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

out('started');
fill();
