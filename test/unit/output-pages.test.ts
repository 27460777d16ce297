/**
 * A long list printed a page at a time (`pipe2me-ctl list` at 50,000 subdomains) is, with --json, the
 * very text the whole list printed at once would be — whatever the pages — and, for people, one table.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Output, table } from '../../src/cli/output.js';

interface Item { name: string; ports: { port: number; protocol: string }[]; note: string | null; nested: { a: number[]; b: Record<string, unknown> } }

const items: Item[] = [
  { name: 'a-one', ports: [{ port: 20000, protocol: 'http' }], note: 'two\nlines and "quotes"', nested: { a: [], b: {} } },
  { name: 'b-two', ports: [], note: null, nested: { a: [1, 2], b: { deep: { deeper: [true, null] } } } },
  { name: 'c-three', ports: [{ port: 20001, protocol: 'tcp' }, { port: 20002, protocol: 'https' }], note: '\u2028', nested: { a: [3], b: { x: 'y' } } },
];

function capture(): { text: () => string } {
  let out = '';
  vi.spyOn(process.stdout, 'write').mockImplementation(((chunk: string | Uint8Array, cb?: unknown) => {
    out += String(chunk);
    if (typeof cb === 'function') cb();
    return true;
  }) as typeof process.stdout.write);
  return { text: () => out };
}

const view = { json: (i: Item) => i, row: (i: Item) => [i.name, String(i.ports.length)], header: ['NAME', 'PORTS'], empty: 'nothing here' };

describe('Output.resultPages', () => {
  afterEach(() => vi.restoreAllMocks());

  const splits: Item[][][] = [[], [[]], [items], [[items[0]!], [], [items[1]!, items[2]!]], items.map((i) => [i])];
  for (const pages of splits) {
    const all = pages.flat();
    it(`--json: ${pages.map((p) => p.length).join('+') || 'no pages'} items print as JSON.stringify of the whole list`, async () => {
      const c = capture();
      await new Output({ json: true }).resultPages<Item>(async (emit) => {
        for (const p of pages) await emit(p);
      }, view);
      expect(c.text()).toBe(JSON.stringify(all, null, 2) + '\n');
      expect(JSON.parse(c.text())).toEqual(all);
    });
  }

  it('for people: one table of every page\'s rows, or the empty message', async () => {
    let c = capture();
    await new Output({}).resultPages<Item>(async (emit) => {
      await emit([items[0]!]);
      await emit([items[1]!, items[2]!]);
    }, view);
    expect(c.text()).toBe(table(items.map(view.row), view.header) + '\n');
    vi.restoreAllMocks();
    c = capture();
    await new Output({}).resultPages<Item>(async () => {}, view);
    expect(c.text()).toBe('nothing here\n');
  });

  it('--json: waits for a full stdout to drain before the next page', async () => {
    let out = '';
    let drained = false;
    vi.spyOn(process.stdout, 'write').mockImplementation(((chunk: string) => {
      out += chunk;
      if (out === chunk) {
        // The first write fills the pipe: it drains a moment later.
        setTimeout(() => {
          drained = true;
          process.stdout.emit('drain');
        }, 20);
        return false;
      }
      return true;
    }) as typeof process.stdout.write);
    const seen: boolean[] = [];
    await new Output({ json: true }).resultPages<Item>(async (emit) => {
      await emit([items[0]!]);
      seen.push(drained);
      await emit([items[1]!]);
    }, view);
    expect(seen).toEqual([true]);
    expect(JSON.parse(out)).toEqual([items[0], items[1]]);
  });
});
