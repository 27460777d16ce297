#!/usr/bin/env node
// Runs ARGV (an ssh client, in the tests) with its stdin an open pipe that is never written to, the way
// `pipe2me start` runs its tunnel: the server's session holder then holds the session until this
// process is told to stop. Exits with the child's code. Usage: session.mjs ARGV...
import { spawn } from 'node:child_process';

const [file, ...args] = process.argv.slice(2);
const child = spawn(file, args, { stdio: ['pipe', 'inherit', 'inherit'] });
const stop = () => child.kill('SIGTERM');
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
