import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PodFiles, type PodState } from '../../src/pod/files.js';
import { renderService } from '../../src/pod/service.js';

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'p2m-svc-'));
  const state: PodState = {
    version: 1, server: 'https://server.pipe.test', id: 'a'.repeat(32), name: 'home-lab', fqdn: 'home-lab.pipe.test', domain: 'pipe.test',
    services: [{ protocol: 'http', port: 20000, localHost: 'localhost', localPort: 8080 }], passthrough: false, expires: null,
    ssh: { host: '203.0.113.1', port: 4444, user: 'pipe2me-tunnel', hostKeyAlias: 'pipe2me-pipe.test' }, createdAt: '2026-01-01T00:00:00Z',
  };
  new PodFiles(dir).write(state);
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('service files for pipe2me start', () => {
  it('systemd: a unit per tunnel set that runs start in the foreground and does not loop when refused for good', () => {
    const s = renderService(dir, 'linux', 'pipe2me-pod');
    expect(s.name).toBe('pipe2me-home-lab.service');
    expect(s.content).toContain(`ExecStart=${process.execPath} `);
    expect(s.content).toContain(`start --dir ${dir}`);
    expect(s.content).toContain('RestartPreventExitStatus=9');
    expect(s.content).toContain('User=pipe2me-pod');
  });

  it('launchd: a plist with the same command, kept alive unless it exits cleanly', () => {
    const s = renderService(dir, 'darwin');
    expect(s.kind).toBe('launchd');
    expect(s.name).toBe('org.pipe2me.home-lab');
    expect(s.content).toMatch(/^<\?xml version="1.0" encoding="UTF-8"\?>/);
    const args = [...s.content.matchAll(/<string>([^<]*)<\/string>/g)].map((m) => m[1]);
    expect(args).toEqual(expect.arrayContaining([process.execPath, 'start', '--dir', dir]));
    expect(s.content).toContain('<key>SuccessfulExit</key>\n    <false/>');
  });

  it('refuses a tunnel-set path the unit file cannot hold', () => {
    const bad = fs.mkdtempSync(path.join(os.tmpdir(), 'p2m svc '));
    try {
      fs.copyFileSync(new PodFiles(dir).state, new PodFiles(bad).state);
      expect(() => renderService(bad, 'linux', 'root')).toThrow(/is not a plain absolute path/);
    } finally {
      fs.rmSync(bad, { recursive: true, force: true });
    }
  });
});
