/**
 * IPv4 port mappings by NAT-PMP (RFC 6886) through `natpmpc` (libnatpmp), for routers that speak no UPnP
 * IGD (Apple's, many OpenWrt setups). NAT-PMP maps for the host that asks, so no LAN address is sent;
 * the router may grant a shorter lifetime than asked, and the pod renews at half of what was granted.
 * A lifetime of 0 removes a mapping.
 */
import { run } from '../../util/exec.js';
import type { Gateway, MapResult, PortMapper, WantedMapping } from './types.js';

const TIMEOUT_MS = 15_000;

/** libnatpmp's result codes (natpmp.h), which natpmpc prints as "... returned -N (FAILED)". */
const NATPMP_ERRORS: Record<string, string> = {
  '-7': 'no NAT-PMP answer from the gateway (it does not speak NAT-PMP)',
  '-50': 'the gateway speaks another NAT-PMP version',
  '-51': 'the router refused the mapping (not authorized)',
  '-52': 'the router has no working external connection (network failure)',
  '-53': 'the router is out of mappings (out of resources)',
  '-54': 'the router does not support this request (unsupported opcode)',
  '-100': 'no NAT-PMP answer from the gateway (timed out)',
};

export function parsePublicAddress(out: string): string | null {
  return /Public IP address\s*:\s*(\S+)/.exec(out)?.[1] ?? null;
}

/** The mapping line natpmpc prints ("liftime" is natpmpc's own spelling). */
export function parseMapping(out: string): { publicPort: number; privatePort: number; lifetime: number } | null {
  const m = /Mapped public port (\d+) protocol \w+ to local port (\d+) li(?:fe)?f?time (\d+)/i.exec(out);
  return m ? { publicPort: Number(m[1]), privatePort: Number(m[2]), lifetime: Number(m[3]) } : null;
}

export function natpmpFailure(out: string): { ok: false; code?: string; detail: string } {
  // The last negative result is the one that ended the run; stderr says it in words ("... failed : not authorized").
  const all = [...out.matchAll(/returned (-\d+) \(([^)]*)\)/g)];
  const last = all[all.length - 1];
  const words = /readnatpmpresponseorretry\(\) failed : ([^\n]+)/.exec(out)?.[1]?.trim();
  if (last) return { ok: false, code: last[1], detail: NATPMP_ERRORS[last[1]!] ?? `the router refused: ${words ?? last[2]} (${last[1]})` };
  return { ok: false, detail: words ?? (out.trim().split('\n').pop()?.slice(0, 200) || 'natpmpc failed') };
}

export class NatpmpMapper implements PortMapper {
  readonly method = 'natpmp' as const;
  /** @param gateway the router's LAN address; natpmpc takes the default route's gateway without it. */
  constructor(private readonly gateway?: string) {}

  private base(): string[] {
    return this.gateway ? ['-g', this.gateway] : [];
  }

  async discover(): Promise<Gateway | null> {
    const r = await run('natpmpc', this.base(), { allowFailure: true, timeout: TIMEOUT_MS });
    const out = r.stdout + r.stderr;
    const external = parsePublicAddress(out);
    if (!external) return null;
    const gw = /using gateway\s*:\s*(\S+)/.exec(out)?.[1] ?? this.gateway ?? 'default gateway';
    // NAT-PMP maps to whoever asks: the LAN address is only for display.
    return { url: `natpmp://${gw}`, lanIp: 'this host', externalIp: external };
  }

  async add(_g: Gateway, m: WantedMapping, _description: string, lease: number): Promise<MapResult> {
    // NAT-PMP has no permanent mappings: 0 would delete. Ask for a week when "permanent" was asked.
    const lifetime = lease > 0 ? lease : 7 * 86400;
    const r = await run('natpmpc', [...this.base(), '-a', String(m.externalPort), String(m.internalPort), 'tcp', String(lifetime)], { allowFailure: true, timeout: TIMEOUT_MS });
    const out = r.stdout + r.stderr;
    const got = parseMapping(out);
    if (!got || r.exitCode !== 0) return natpmpFailure(out);
    // The router chooses: miniupnpd answers a forbidden or taken port with the next free one. That
    // mapping is of no use (the pod's public port is fixed), so it is given back at once.
    if (got.publicPort !== m.externalPort) {
      await this.remove(_g, m);
      return { ok: false, code: 'port', detail: `the router gave public port ${got.publicPort} instead of ${m.externalPort} (taken or not allowed there)` };
    }
    return { ok: true, detail: 'mapped', lease: got.lifetime };
  }

  async remove(_g: Gateway, m: WantedMapping): Promise<void> {
    await run('natpmpc', [...this.base(), '-a', String(m.externalPort), String(m.internalPort), 'tcp', '0'], { allowFailure: true, timeout: TIMEOUT_MS });
  }
}
