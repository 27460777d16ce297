/**
 * Every command of both CLIs documents itself: a description, and `--help` with at least one example
 * that is a real command line for that very command. Each example is parsed by the real program (with
 * every action replaced by a no-op), so an example with a misspelt or missing option, a wrong choice,
 * a missing argument or a bad value fails here instead of in an operator's shell.
 */
import { describe, expect, it } from 'vitest';
import type { Command } from 'commander';
import { buildProgram as buildCtl } from '../../src/cli/ctl.js';
import { buildProgram as buildPod, foldOnRenew } from '../../src/cli/pod.js';

interface Entry {
  /** The words after the program name, e.g. ['token', 'create']. */
  path: string[];
  cmd: Command;
}

function walk(cmd: Command, path: string[] = []): Entry[] {
  return cmd.commands.flatMap((c) => [{ path: [...path, c.name()], cmd: c }, ...walk(c, [...path, c.name()])]);
}

function everyCommand(program: Command): Command[] {
  return [program, ...walk(program).map((e) => e.cmd)];
}

/** What `<cmd> --help` prints: commander's help plus every addHelpText, captured instead of written. */
function fullHelp(cmd: Command): string {
  let text = '';
  cmd.configureOutput({ writeOut: (s) => (text += s), writeErr: (s) => (text += s), getOutHelpWidth: () => 120 });
  cmd.outputHelp();
  return text;
}

/** Splits a shell line into words (plain or quoted), up to the first pipe, redirection, `&&`, `;` or comment. */
function shellWords(line: string): string[] {
  const words: string[] = [];
  const re = /\s*(?:'([^']*)'|"([^"]*)"|([^\s'"]+))/gy;
  let m: RegExpExecArray | null;
  while ((m = re.exec(line)) !== null) {
    const word = m[1] ?? m[2] ?? m[3]!;
    if (m[3] !== undefined && /^(\||&&|;|#|>|<|2>)/.test(word)) break;
    words.push(word);
  }
  return words;
}

/** The example command lines of a help text: lines starting with the program name, `\` continuations joined. */
function exampleLines(help: string, programName: string): string[] {
  const joined = help.replace(/\\\n\s*/g, ' ');
  return joined.split('\n').map((l) => l.trim()).filter((l) => l.startsWith(programName + ' '));
}

function longOptions(cmd: Command | null): Set<string> {
  const all = new Set<string>(['--help']);
  for (let c = cmd; c; c = c.parent) for (const o of c.options) if (o.long) all.add(o.long);
  return all;
}

/** Parses an example with a fresh program whose actions do nothing; returns the command it ran. */
async function parseExample(build: () => Command, words: string[]): Promise<{ ran: Command | null; error: unknown }> {
  const program = build();
  let ran: Command | null = null;
  for (const c of everyCommand(program)) {
    c.configureOutput({ writeOut: () => {}, writeErr: () => {} });
    c.exitOverride();
    if (c.commands.length === 0) c.action((...args: unknown[]) => { ran = args[args.length - 1] as Command; });
  }
  try {
    // What main() does to argv first (only the pod's start has --on-renew, which takes the rest of the line).
    await program.parseAsync(foldOnRenew(words), { from: 'user' });
    return { ran, error: null };
  } catch (e) {
    return { ran, error: e };
  }
}

const programs: [string, () => Command][] = [['pipe2me-ctl', buildCtl], ['pipe2me', buildPod]];

for (const [name, build] of programs) {
  describe(`${name} --help`, () => {
    const program = build();
    const entries = walk(program);

    it('has the commands this test walks', () => {
      expect(program.name()).toBe(name);
      expect(entries.length).toBeGreaterThan(5);
    });

    for (const { path, cmd } of entries) {
      const full = `${name} ${path.join(' ')}`;
      describe(full, () => {
        const help = fullHelp(cmd);
        const examples = exampleLines(help, name);

        it('has a description', () => {
          expect(cmd.description().trim()).not.toBe('');
        });

        it('has an example of this command', () => {
          expect(help).toMatch(/^Examples?:/m);
          const escaped = full.replace(/[.*+?^${}()|[\]\\-]/g, '\\$&');
          expect(help, `no line starting with "  ${full}"`).toMatch(new RegExp(`^\\s+${escaped}(\\s|$)`, 'm'));
        });

        it('its examples use only options that exist, and parse', async () => {
          expect(examples.length).toBeGreaterThan(0);
          for (const line of examples) {
            const words = shellWords(line).slice(1);
            const { ran, error } = await parseExample(build, words);
            expect(error, `${line}\n  is refused: ${String((error as Error | null)?.message ?? '')}`).toBeNull();
            expect(ran, `${line}\n  runs no command`).not.toBeNull();
            const ranPath: string[] = [];
            for (let c: Command | null = ran; c?.parent; c = c.parent) ranPath.unshift(c.name());
            expect(ranPath.slice(0, path.length), `${line}\n  is not an example of ${full}`).toEqual(path);
            const known = longOptions(ran);
            // Words after --on-renew are the command it runs, not options of ours.
            const ours = words.includes('--on-renew') ? words.slice(0, words.indexOf('--on-renew') + 1) : words;
            for (const w of ours.filter((x) => x.startsWith('--'))) {
              expect(known.has(w.split('=')[0]!), `${line}\n  uses ${w}, which ${ranPath.join(' ')} does not have`).toBe(true);
            }
          }
        });
      });
    }

    it('the top-level help\'s command lines parse too', async () => {
      const lines = exampleLines(fullHelp(program), name);
      expect(lines.length).toBeGreaterThan(0);
      for (const line of lines) {
        const { error } = await parseExample(build, shellWords(line).slice(1));
        expect(error, `${line}\n  is refused: ${String((error as Error | null)?.message ?? '')}`).toBeNull();
      }
    });
  });
}
