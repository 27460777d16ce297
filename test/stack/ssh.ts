/** Plain ssh from a pod host with a key, to see what the tunnel sshd allows (tests only). */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Stack } from './stack.js';
import type { HostName } from '../world/index.js';
import { ADDR } from '../world/index.js';

export interface SshAttempt {
  exitCode: number;
  output: string;
}

export class SshClient {
  readonly knownHosts: string;
  constructor(readonly stack: Stack, readonly keyFile: string, readonly host: HostName = 'pod') {
    const pub = fs.readFileSync(stack.layout.sshd.hostKey + '.pub', 'utf8').trim().split(/\s+/).slice(0, 2).join(' ');
    this.knownHosts = path.join(path.dirname(keyFile), 'test_known_hosts');
    fs.writeFileSync(this.knownHosts, `[${ADDR.server}]:${stack.config.ssh.port} ${pub}\n`);
  }

  argv(extra: readonly string[]): string[] {
    return [
      'ssh', '-F', '/dev/null', '-i', this.keyFile, '-o', 'IdentitiesOnly=yes', '-o', 'IdentityAgent=none', '-o', `UserKnownHostsFile=${this.knownHosts}`,
      '-o', 'StrictHostKeyChecking=yes', '-o', 'BatchMode=yes', '-o', 'ConnectTimeout=5', '-o', 'ExitOnForwardFailure=yes',
      '-p', String(this.stack.config.ssh.port), ...extra, `${this.stack.tunnelUser}@${ADDR.server}`,
    ];
  }

  /** Runs ssh with stdin closed (so a held session ends at once) and a timeout. */
  async attempt(extra: readonly string[], trailing: readonly string[] = [], timeout = 15_000): Promise<SshAttempt> {
    const r = await this.stack.world.inNs(this.host, [...this.argv(extra), ...trailing], { allowFailure: true, timeout });
    return { exitCode: r.exitCode, output: `${r.stdout}\n${r.stderr}` };
  }
}
