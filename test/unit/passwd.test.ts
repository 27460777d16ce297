/** userUid reads /etc/passwd before it spawns getent: the parse must find exactly the user's own line. */
import * as fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { uidInPasswd, userUid } from '../../src/daemons/sessions.js';
import { run } from '../../src/util/exec.js';

const PASSWD = [
  'root:x:0:0:root:/root:/bin/bash',
  'pipe2me-tunnelx:x:998:998::/nonexistent:/usr/sbin/nologin',
  'pipe2me-tunnel:x:999:999::/nonexistent:/bin/sh',
  'broken:x::1::/:/bin/sh',
  'short:x:5',
  '',
].join('\n');

describe('the uid of a local user', () => {
  it('is the uid on its own line, not on a line whose name only starts the same', () => {
    expect(uidInPasswd(PASSWD, 'pipe2me-tunnel')).toBe(999);
    expect(uidInPasswd(PASSWD, 'pipe2me-tunnelx')).toBe(998);
    expect(uidInPasswd(PASSWD, 'root')).toBe(0);
  });

  it('is not found for a missing user, an empty uid or a short line', () => {
    expect(uidInPasswd(PASSWD, 'pipe2me')).toBeUndefined();
    expect(uidInPasswd(PASSWD, 'broken')).toBeUndefined();
    expect(uidInPasswd(PASSWD, 'short')).toBeUndefined();
    expect(uidInPasswd('', 'root')).toBeUndefined();
  });

  it('agrees with getent for the users of this machine, and a user nobody has is not found', async () => {
    const passwd = fs.readFileSync('/etc/passwd', 'utf8');
    const names = passwd.split('\n').filter(Boolean).slice(0, 5).map((l) => l.split(':')[0]!);
    for (const name of names) {
      const viaNss = (await run('getent', ['passwd', name], { timeout: 10_000 })).stdout.split(':')[2];
      expect(uidInPasswd(passwd, name)).toBe(Number(viaNss));
      expect(await userUid(name)).toBe(Number(viaNss));
    }
    expect(await userUid('no-such-user-p2m')).toBeUndefined();
  });
});
