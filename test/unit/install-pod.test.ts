/**
 * scripts/install-pod, read as text: it stands alone on a pod (no clone beside it), so what it shares
 * with the project's own scripts is copied, and these checks keep the copies equal. Running it is
 * test/ops/pod-install.test.ts.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const read = (p: string) => fs.readFileSync(path.join(ROOT, p), 'utf8');

function lineStarting(text: string, prefix: string): string {
  const line = text.split('\n').find((l) => l.startsWith(prefix));
  expect(line, `a line starting with ${prefix}`).toBeDefined();
  return line!;
}

describe('scripts/install-pod', () => {
  const script = read('scripts/install-pod');

  it('decides whether Node.js is suitable, and where pipe2me\'s own lives, exactly as scripts/node-env.sh', () => {
    const env = read('scripts/node-env.sh');
    expect(lineStarting(script, 'node_ok() {')).toBe(lineStarting(env, 'node_ok() {'));
    expect(lineStarting(script, 'if ! node_ok && [ -x ')).toBe(lineStarting(env, 'if ! node_ok && [ -x '));
    expect(script).toContain('NODE_DIR=/opt/pipe2me-node');
  });

  it('installs the Debian packages the pod drives and none of the server\'s', () => {
    const m = /^PACKAGES=\(([^)]*)\)$/m.exec(script);
    expect(m).not.toBeNull();
    expect(m![1]!.split(/\s+/).filter(Boolean).sort()).toEqual(['autossh', 'ca-certificates', 'miniupnpc', 'natpmpc', 'openssh-client', 'openssl']);
    // Each program the pod runs comes from one of them (src/util/programs.ts names the packages).
    const programs = read('src/util/programs.ts');
    for (const prog of ['ssh', 'ssh-keygen', 'autossh', 'openssl', 'upnpc']) {
      const pkg = new RegExp(`^\\s*'?${prog}'?: '([^']+)'`, 'm').exec(programs)?.[1];
      expect(m![1], prog).toContain(pkg);
    }
  });
});
