/** The watcher's debounce: quiet after the last change, but never later than its ceiling after the first. */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Debouncer } from '../../src/util/debounce.js';

describe('Debouncer', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('fires once, quietMs after the last of a few touches', () => {
    const fired: number[] = [];
    const d = new Debouncer(300, 1000, () => fired.push(Date.now()), () => Date.now());
    const t0 = Date.now();
    d.touch();
    vi.advanceTimersByTime(100);
    d.touch();
    vi.advanceTimersByTime(299);
    expect(fired).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(fired).toEqual([t0 + 400]);
  });

  it('under touches every 250 ms that never stop, fires every maxWaitMs instead of never', () => {
    let fired = 0;
    const d = new Debouncer(300, 1000, () => fired++, () => Date.now());
    for (let i = 0; i < 40; i++) {
      d.touch();
      vi.advanceTimersByTime(250);
    }
    // 10 s of touches: a plain 300 ms debounce would not have fired at all.
    expect(fired).toBeGreaterThanOrEqual(9);
    expect(fired).toBeLessThanOrEqual(11);
    d.cancel();
    vi.advanceTimersByTime(5000);
    expect(fired).toBeLessThanOrEqual(11);
  });
});
