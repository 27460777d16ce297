/**
 * A malformed subdomain name is bad usage (exit 2) in every command that takes one, refused while the
 * command line is parsed — before any configuration or state is opened — while a well-formed name goes
 * on to the lookup (which says "not found", exit 4, if it does not exist: see state.test.ts).
 */
import { describe, expect, it } from 'vitest';
import type { Command } from 'commander';
import { buildProgram as buildCtl } from '../../src/cli/ctl.js';
import { buildProgram as buildPod } from '../../src/cli/pod.js';
import { ConfigError, ExitCode, InputError } from '../../src/util/errors.js';

const NO_CONFIG = '/nonexistent/pipe2me-test/pipe2me.yml';

async function failure(program: Command, args: string[]): Promise<unknown> {
  program.configureOutput({ writeOut: () => {}, writeErr: () => {} });
  try {
    await program.parseAsync(args, { from: 'user' });
  } catch (e) {
    return e;
  }
  throw new Error(`${args.join(' ')} succeeded`);
}

describe('subdomain names on the command line', () => {
  const ctlCases: [string, string[]][] = [
    ['show', ['show', 'Bad_Name!']],
    ['show (fqdn)', ['show', 'bad_x.pipe.example.com']],
    ['remove', ['remove', 'Bad_Name!', '--no-apply']],
    ['set-key', ['set-key', 'Bad_Name!', '/tmp/key.pub']],
    ['probe --name', ['probe', '--name', 'calm-red-otter', 'Bad_Name!']],
  ];
  for (const [what, args] of ctlCases) {
    it(`pipe2me-ctl ${what}: a malformed name is exit 2 and says what is wrong`, async () => {
      const e = await failure(buildCtl(), ['--config', NO_CONFIG, ...args]);
      expect(e).toBeInstanceOf(InputError);
      expect((e as InputError).exitCode).toBe(ExitCode.usage);
      expect((e as InputError).message).toMatch(/contains the character "_"/);
    });
  }

  it('pipe2me-ctl: a well-formed name passes parsing and reaches the lookup', async () => {
    // The configuration is opened only after parsing: its absence (exit 3) shows the name was accepted.
    for (const args of [['show', 'calm-red-otter'], ['show', 'Calm-Red-Otter.pipe.example.com.'], ['remove', 'calm-red-otter'], ['probe', '--name', 'calm-red-otter', 'home-lab']]) {
      const e = await failure(buildCtl(), ['--config', NO_CONFIG, ...args]);
      expect(e, args.join(' ')).toBeInstanceOf(ConfigError);
    }
  });

  it('pipe2me setup --name: a malformed name is exit 2 before anything is sent', async () => {
    const e = await failure(buildPod(), ['--dir', '/nonexistent/pipe2me-test-pod', 'setup', '--server', 'https://server.pipe.example.com', '--token', 'p2mt_x', '--name', 'Bad_Name!']);
    expect(e).toBeInstanceOf(InputError);
    expect((e as InputError).message).toMatch(/"Bad_Name!" contains the character "_"/);
  });
});
