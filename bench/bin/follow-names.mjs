#!/usr/bin/env node
// Follows a fleet's names after a fault, run as a world daemon in the client's namespace:
//
//   follow-names.mjs PODS.json NAMESERVER EXPECTED_ADDRESS MAX_MS
//
// PODS.json: [{"fqdn", "port"}…]. For every pod, over and over (64 checks in flight, the pods taking turns,
// each asked again at least 200 ms after its last answer): the A record of its name at NAMESERVER, until it
// is EXPECTED_ADDRESS (the moment is the pod's "dns" time), then an HTTP GET to that address with the name
// as Host, until one answers 200 (its "served" time). Prints "following" once running, then "result {json}" (epoch ms per pod; null where
// MAX_MS passed first) and exits.
import { Resolver } from 'node:dns/promises';
import * as fs from 'node:fs';
import http from 'node:http';

const [podsFile, nameserver, expected, maxText] = process.argv.slice(2);
const pods = JSON.parse(fs.readFileSync(podsFile, 'utf8'));
const maxMs = Number(maxText ?? 120_000);
const now = () => performance.timeOrigin + performance.now();
const startedAt = now();
const resolver = new Resolver({ timeout: 500, tries: 1 });
resolver.setServers([nameserver]);
const dnsAt = new Array(pods.length).fill(null);
const servedAt = new Array(pods.length).fill(null);
let queries = 0;
let requests = 0;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function get(fqdn, port) {
  return new Promise((resolve) => {
    const req = http.request({ host: expected, port, path: '/', headers: { host: `${fqdn}:${port}` }, timeout: 2000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode === 200));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
    req.on('close', () => resolve(false));
    req.end();
  });
}

/**
 * One step for pod i: its DNS answer until it is the expected address, then one HTTP request. Steps of all
 * pods take turns (a queue), so that a pod whose tunnel is not back yet never holds up the others' checks.
 */
async function step(i) {
  const { fqdn, port } = pods[i];
  if (dnsAt[i] === null) {
    queries++;
    const a = await resolver.resolve4(fqdn).catch(() => []);
    if (a.length === 1 && a[0] === expected) dnsAt[i] = now();
    else return false;
  }
  requests++;
  if (await get(fqdn, port)) {
    servedAt[i] = now();
    return true;
  }
  return false;
}

const queue = pods.map((_, i) => ({ i, notBefore: 0 }));
let unfinished = pods.length;
async function worker() {
  // Until every pod is served: a queue that is empty for a moment (its pods in flight) is waited for.
  while (unfinished > 0 && now() - startedAt < maxMs) {
    const item = queue.shift();
    if (!item) {
      await sleep(20);
      continue;
    }
    const wait = item.notBefore - now();
    if (wait > 0) await sleep(wait);
    if (await step(item.i)) unfinished--;
    else queue.push({ i: item.i, notBefore: now() + 200 });
  }
}

process.stdout.write('following\n');
await Promise.all(Array.from({ length: Math.min(64, pods.length) }, worker));
process.stdout.write(`result ${JSON.stringify({ startedAt, dnsAt, servedAt, queries, requests })}\n`);
