/** Finding a running daemon by its pid file, and signalling it. */
import * as fs from 'node:fs';
import { readIfExists } from '../util/fsx.js';

export function readPid(pidFile: string): number | undefined {
  const text = readIfExists(pidFile)?.trim();
  if (!text || !/^\d+$/.test(text)) return undefined;
  return Number(text);
}

/** Is a process with this pid alive? (Signal 0 checks without sending anything; a zombie still counts.) */
export function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export function processComm(pid: number): string | undefined {
  try {
    return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** The pid from `pidFile` if that process is alive and is the program we expect (pids get reused). */
export function runningPid(pidFile: string, expectComm: string): number | undefined {
  const pid = readPid(pidFile);
  if (pid === undefined) return undefined;
  const comm = processComm(pid);
  if (comm === undefined) {
    // No /proc (macOS): fall back to signal 0.
    return pidAlive(pid) ? pid : undefined;
  }
  return comm.startsWith(expectComm) ? pid : undefined;
}

/** `servedAfterMs`: how long after the signal the daemon served the new files (apply waits for that). */
export type ReloadOutcome = { status: 'reloaded'; detail: string; servedAfterMs?: number } | { status: 'not-running'; detail: string };

/** Polls `done` every `intervalMs` until it is true or `timeoutMs` passed; returns the time it took, or null. */
export async function waitUntil(done: () => boolean | Promise<boolean>, timeoutMs: number, intervalMs = 10): Promise<number | null> {
  const start = performance.now();
  for (;;) {
    if (await done()) return performance.now() - start;
    if (performance.now() - start > timeoutMs) return null;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

export function processTitle(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ').trim();
  } catch {
    return '';
  }
}

/**
 * Asks a running daemon to re-read its configuration with SIGHUP (sshd re-execs itself with its original
 * argv; nginx's master replaces its workers and keeps the old config if the new one is broken).
 */
export function hangUp(pidFile: string, program: string): ReloadOutcome {
  const pid = runningPid(pidFile, program);
  if (pid === undefined) return { status: 'not-running', detail: `no ${program} at ${pidFile}; the new configuration is used when it starts` };
  process.kill(pid, 'SIGHUP');
  return { status: 'reloaded', detail: `SIGHUP to ${program} ${pid}` };
}

/** The fields of /proc/PID/stat after the command name ("S ppid pgrp …"), or undefined if it is gone. */
export function statFields(pid: number): string[] | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** When a process started (clock ticks since boot, field 22 of /proc/PID/stat): with the pid, it names one process for good. */
/**
 * The children of a process, from its own /proc entry (one small read, whatever else runs on the
 * machine; the threads of a single-threaded daemon are just its main one).
 */
export function childrenOf(pid: number): number[] {
  try {
    return fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

export function processStartTime(pid: number): string | undefined {
  return statFields(pid)?.[19];
}

/** Alive and not a zombie (a killed process stays a zombie until its parent reaps it). */
export function processRunning(pid: number): boolean {
  const state = statFields(pid)?.[0];
  return state !== undefined && state !== 'Z' && state !== 'X';
}

export interface ProcessInfo {
  pid: number;
  ppid: number;
  uid: number;
  comm: string;
}

/** Every process of this pid namespace with its parent, owner and name (one pass over /proc). */
export function listProcesses(): ProcessInfo[] {
  const out: ProcessInfo[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    try {
      const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
      const comm = /^Name:\s+(.*)$/m.exec(status)?.[1] ?? '';
      const ppid = Number(/^PPid:\s+(\d+)/m.exec(status)?.[1]);
      const uid = Number(/^Uid:\s+(\d+)/m.exec(status)?.[1]);
      out.push({ pid, ppid, uid, comm });
    } catch {
      /* gone meanwhile */
    }
  }
  return out;
}
