/**
 * Registering a pod's ssh key, the same way from the API and from `pipe2me-ctl set-key`: parsed into its
 * canonical form, refused if it is the tunnel sshd's own host key or another pod's key, stored, written
 * into the key index (it logs in within a second, no sshd reload), and — when it replaces a key — the old
 * key's live connections are cut, so a replaced key never keeps holding the pod's ports.
 */
import * as fs from 'node:fs';
import type { ApplyReport } from '../apply/apply.js';
import type { Unit } from '../render/types.js';
import { cutSessions, type SessionDirs } from '../daemons/sessions.js';
import { parsePublicKey, type ParsedPublicKey } from '../ssh/pubkey.js';
import { setSshKey } from '../state/subdomains.js';
import type { SubdomainRecord } from '../state/types.js';
import { slotBinds } from '../render/relays.js';
import { ConflictError } from '../util/errors.js';
import type { ServerContext } from './context.js';

export function sessionDirs(ctx: ServerContext): SessionDirs {
  return { sessionsDir: ctx.layout.sessionsDir, connsDir: ctx.layout.connsDir };
}

/** What cutSessions needs to find a pod's tunnels by what they hold: its ports, and with slots its slot's addresses here. */
export function tunnelsOf(ctx: ServerContext, s: Pick<SubdomainRecord, 'name' | 'ports' | 'slot'>): { tunnelUser: string; name: string; ports: number[]; addresses?: string[] } {
  const binds = slotBinds(ctx.config);
  return { tunnelUser: ctx.config.ssh.tunnelUser, name: s.name, ports: s.ports.map((p) => p.port), ...(binds ? { addresses: binds(s.slot) } : {}) };
}

/** The tunnel sshd's host key, canonical: a pod must never register it (it would then be "the server"). */
function hostKeyFingerprint(ctx: ServerContext): string | undefined {
  try {
    return parsePublicKey(fs.readFileSync(ctx.layout.sshd.hostKey + '.pub', 'utf8')).fingerprint;
  } catch {
    return undefined;
  }
}

export interface KeyRegistration {
  key: ParsedPublicKey;
  replaced: string | null;
  cutSessions: number;
  applied: ApplyReport;
}

export async function registerPodKey(ctx: ServerContext, s: SubdomainRecord, text: unknown, applyUnits: (units: Unit[]) => Promise<ApplyReport>): Promise<KeyRegistration> {
  const key = parsePublicKey(text);
  if (key.fingerprint === hostKeyFingerprint(ctx)) {
    throw new ConflictError('key_in_use', 'This is the tunnel server\'s own host key, not a key a pod may use.', { hint: 'Every pod needs its own key pair: create one (pipe2me setup does).' });
  }
  const old = s.key && s.key.fingerprint !== key.fingerprint ? s.key.fingerprint : null;
  await setSshKey(ctx.db, s.id, key);
  const applied = await applyUnits(['keys']);
  let cut = 0;
  if (old) {
    const r = await cutSessions({ ...sessionDirs(ctx), ...tunnelsOf(ctx, s), onlyFingerprint: old });
    cut = r.killed.length;
  }
  return { key, replaced: old, cutSessions: cut, applied };
}
