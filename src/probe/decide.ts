/**
 * The route decision, pure: fail fast, recover slowly. One failed probe run sends a pod's name back to
 * the server at once (clients must not be sent to a dead route); going direct takes one good run, or
 * `recoverAfter` good runs in a row if the pod fell back within the flap window, so that a flapping
 * router does not flap DNS.
 */
import type { Route } from '../state/types.js';

export interface RouteState {
  route: Route;
  direct: string | null;
  streak: number;
  lastFallbackAt: number | null;
}

export interface ProbeVerdict {
  ok: boolean;
  address: string | null;
  reason: string;
}

export interface DecisionPolicy {
  recoverAfter: number;
  flapWindowSeconds: number;
}

export interface Decision extends RouteState {
  changed: boolean;
  reason: string;
  fallbackAt?: number;
  changedAt?: number;
}

export function decide(prev: RouteState, v: ProbeVerdict, policy: DecisionPolicy, now: number): Decision {
  if (!v.ok || !v.address) {
    if (prev.route === 'direct') {
      return { route: 'server', direct: null, streak: 0, lastFallbackAt: now, changed: true, reason: `back to the server: ${v.reason}`, fallbackAt: now, changedAt: now };
    }
    return { ...prev, streak: 0, changed: false, reason: v.reason };
  }
  if (prev.route === 'direct') {
    // Still good; the router's address may have changed, and it was verified at the new one.
    const moved = prev.direct !== v.address;
    return { route: 'direct', direct: v.address, streak: prev.streak + 1, lastFallbackAt: prev.lastFallbackAt, changed: moved,
      reason: moved ? `direct: the address moved to ${v.address}, verified` : v.reason, ...(moved ? { changedAt: now } : {}) };
  }
  const streak = prev.streak + 1;
  const flapping = prev.lastFallbackAt !== null && now - prev.lastFallbackAt < policy.flapWindowSeconds;
  const needed = flapping ? policy.recoverAfter : 1;
  if (streak >= needed) {
    return { route: 'direct', direct: v.address, streak, lastFallbackAt: prev.lastFallbackAt, changed: true, reason: `direct: ${v.reason}`, changedAt: now };
  }
  return { ...prev, streak, changed: false, reason: `${v.reason}; staying on the server until ${needed} good probes in a row (it fell back recently): ${streak}/${needed}` };
}
