/**
 * A rendered file: content in memory, where it goes and with which mode. `unit` groups the files a
 * daemon's checker validates together; `order` says which renames go first (included files before the
 * file that includes them).
 */
export type Unit = 'sshd' | 'keys' | 'nginx' | 'dns' | 'firewall';

export interface RenderedFile {
  unit: Unit;
  path: string;
  content: string;
  mode: number;
  order: number;
  /**
   * What one pod's data could not put in this file, left out with the reason so that the file still goes
   * live for every other pod: an address the zone may not publish (render.zoneRecords), a key the key index
   * cannot file (render.renderKeyList).
   */
  dropped?: DroppedEntry[];
  /**
   * Set when the renderer proved the file is exactly the live one (it was what the last apply wrote and no
   * pod changed since) without reading it: `content` then reads the live file only when asked, and the
   * planner calls it unchanged unread. A no-op apply at 50,000 pods need not read tens of MiB.
   */
  sameAsLive?: true;
}

export interface DroppedEntry {
  where: 'zone' | 'key index';
  owner: string;
  type: string;
  value: string;
  why: string;
}

/** The serial placeholder in a rendered zone; the planner puts the real serial in. */
export const SERIAL_PLACEHOLDER = '@@SERIAL@@';

/**
 * What rendering needs of a subdomain, and nothing more: the state store reads exactly this for an apply
 * (renderSnapshot), which at 10,000 subdomains is several times cheaper than full records.
 */
export interface RenderSubdomain {
  name: string;
  fqdn: string;
  status: 'active' | 'expired';
  passthrough: boolean;
  route: 'server' | 'direct';
  directIpv4: string | null;
  route6: 'server' | 'direct';
  directIpv6: string | null;
  /** The relay holding the pod's newest session, if any (with relays; see entries.podRecords). */
  relay: string | null;
  /** Its address slot (absent: 0): it is published at that address of the relay holding it. */
  slot?: number;
  ports: { port: number; protocol: 'http' | 'https' | 'tcp'; position: number }[];
  /** The canonical key and its SHA256 fingerprint (what sshd hands the key lookup). */
  key: { publicKey: string; fingerprint: string } | null;
}
