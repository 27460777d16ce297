import { describe, expect, it } from 'vitest';
import { generateName, LABEL_RE, validateName } from '../../src/names/names.js';
import { InputError } from '../../src/util/errors.js';

describe('names', () => {
  it('generates readable word-word-word labels that are valid DNS labels', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 2000; i++) {
      const n = generateName();
      expect(n).toMatch(/^[a-z]+-[a-z]+-[a-z]+$/);
      expect(LABEL_RE.test(n)).toBe(true);
      seen.add(n);
    }
    // 655,360 combinations: 2000 draws should almost never collide more than a handful of times.
    expect(seen.size).toBeGreaterThan(1980);
  });

  it('accepts a valid label and lower-cases it', () => {
    expect(validateName('Home-Lab-1')).toBe('home-lab-1');
    expect(validateName('a')).toBe('a');
    expect(validateName('x'.repeat(63))).toBe('x'.repeat(63));
  });

  const hostile: [string, RegExp][] = [
    ['evil\nname', /newline/],
    ['evil\rname', /carriage return/],
    ['a"b', /character "\\""/],
    ["a'b", /character "'"/],
    ['a{b}', /character "\{"/],
    ['a;b', /character ";"/],
    ['a b', /space/],
    ['café', /non-ASCII/],
    ['x'.repeat(64), /64 characters long/],
    ['-lead', /starts or ends/],
    ['trail-', /starts or ends/],
    ['a.b', /character "\."/],
    ['', /empty/],
  ];
  for (const [value, message] of hostile) {
    it(`refuses ${JSON.stringify(value.slice(0, 20))} with a clear message`, () => {
      let err: unknown;
      try {
        validateName(value);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(InputError);
      expect((err as InputError).message).toMatch(message);
      expect((err as InputError).hint).toMatch(/DNS label/);
    });
  }

  it('refuses reserved names, always and from the configuration', () => {
    for (const r of ['ns', 'ns1', 'www', 'api', 'server']) expect(() => validateName(r)).toThrow(/reserved/);
    expect(() => validateName('intranet', ['intranet'])).toThrow(/reserved/);
  });
});
