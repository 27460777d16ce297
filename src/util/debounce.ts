/**
 * A debounce with a ceiling: `fire` runs `quietMs` after the last touch, but never later than `maxWaitMs`
 * after the first touch it has not yet answered — under touches that never pause, it still fires.
 */
export class Debouncer {
  private timer: NodeJS.Timeout | undefined;
  private firstPending: number | null = null;

  constructor(private readonly quietMs: number, private readonly maxWaitMs: number, private readonly fire: () => void, private readonly clock: () => number = Date.now) {}

  touch(): void {
    clearTimeout(this.timer);
    const t = this.clock();
    this.firstPending ??= t;
    const wait = Math.max(0, Math.min(this.quietMs, this.firstPending + this.maxWaitMs - t));
    this.timer = setTimeout(() => {
      this.firstPending = null;
      this.fire();
    }, wait);
  }

  cancel(): void {
    clearTimeout(this.timer);
    this.firstPending = null;
  }
}
