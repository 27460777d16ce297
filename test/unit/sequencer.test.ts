import * as fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { LONGEST_FIRST } from '../world/sequencer.js';

describe('the suite\'s start order', () => {
  it('names only files that exist and are in the suite, each once', () => {
    expect(new Set(LONGEST_FIRST).size).toBe(LONGEST_FIRST.length);
    for (const f of LONGEST_FIRST) {
      expect(f).toMatch(/^test\/.+\.test\.ts$/);
      expect(fs.existsSync(f), `${f} is listed in test/world/sequencer.ts but does not exist`).toBe(true);
    }
  });
});
