/**
 * The private CA's bookkeeping in the store: openssl's index, serial and CRL number, kept whole in their
 * own formats (openssl reads and writes them; pipe2me loads them into the CA directory before an operation
 * and saves them after, under the CA's lock). So the store, not one machine's directory, knows every
 * serial handed out and every revocation. The CA's key stays a file (0600) on the machine that made it.
 */
import { inList, type Store } from './store.js';
import { now } from './types.js';

export async function loadCaFiles(s: Store, names: readonly string[]): Promise<Map<string, string>> {
  const rows = await s.q.selectFrom('ca_files').select(['name', 'content']).where(inList(s, 'name', names)).execute();
  return new Map(rows.map((r) => [r.name, r.content]));
}

export async function saveCaFiles(s: Store, files: ReadonlyMap<string, string>): Promise<void> {
  const at = now();
  for (const [name, content] of files) {
    await s.q.insertInto('ca_files').values({ name, content, updated_at: at })
      .onConflict((oc) => oc.column('name').doUpdateSet({ content, updated_at: at })).execute();
  }
}

/** When each record whose name starts with `prefix` (and each of `names`) last changed, in seconds. */
export async function caFileStamps(s: Store, opts: { prefix?: string; names?: readonly string[] }): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  if (opts.prefix !== undefined) {
    // The prefixes are ours ("crl/"), never user text; LIKE's wildcards cannot occur in them.
    const rows = await s.q.selectFrom('ca_files').select(['name', 'updated_at']).where('name', 'like', `${opts.prefix}%`).execute();
    for (const r of rows) out.set(r.name, Number(r.updated_at));
  }
  if (opts.names?.length) {
    const rows = await s.q.selectFrom('ca_files').select(['name', 'updated_at']).where(inList(s, 'name', opts.names)).execute();
    for (const r of rows) out.set(r.name, Number(r.updated_at));
  }
  return out;
}
