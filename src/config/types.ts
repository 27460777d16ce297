/** The operator configuration after validation, defaults and derived values: every field is set. */
export type DnsDaemon = 'bind' | 'nsd';

export interface NameServer {
  /** Fully qualified, without trailing dot. */
  name: string;
  ipv4: string;
}

/** One relay: a server of the fleet that shares the store with the others (one relay when none is configured). */
export interface RelayConfig {
  name: string;
  /** Its nameserver's name in the zone: <name>.<domain>. */
  fqdn: string;
  /** Its first slot's addresses: its own name's, its nameserver's, what pods connect to. */
  ipv4: string;
  ipv6: string | null;
  /**
   * Its public addresses, one per address slot (every relay has the same number): a pod in slot i is
   * published at slots[i] of the relay that holds it, with ports unique within the slot.
   */
  slots: { ipv4: string; ipv6: string | null }[];
}

export interface AcmeConfig {
  directoryUrl: string;
  email: string;
  eabKid: string | null;
  eabHmacKeyFile: string | null;
  trustRootsFile: string | null;
  waitSeconds: number;
  propagationTimeoutSeconds: number;
  retryBaseSeconds: number;
}

export interface Config {
  /** The file it was read from (for messages). */
  file: string;
  domain: string;
  /** This machine: with relays, its addresses are this relay's. */
  server: { name: string; fqdn: string; ipv4: string; ipv6: string | null };
  /**
   * Every relay of the fleet in configuration order, and which one this machine is. Without `relays:` in
   * the file, one relay named after the server with the server's addresses (relayed: false).
   */
  /** slots: how many address slots every relay has (1 without slots: ports are unique fleet-wide and tunnels listen on every address). */
  relays: { list: RelayConfig[]; self: string; relayed: boolean; slots: number };
  ssh: {
    port: number;
    tunnelUser: string;
    /** sshd's AuthorizedKeysCommandUser: runs the key lookup, owns the connection records. */
    keysUser: string;
    maxSessionsPerPod: number;
    perSourceMaxStartups: number;
    loginGraceSeconds: number;
    clientAliveInterval: number;
    clientAliveCountMax: number;
    ciphers: string[];
  };
  ports: { first: number; last: number; maxPerSubdomain: number };
  http: { redirectStatus: 301 | 302 | 307 | 308; apiPort: number; streamModule: string | null; workerProcesses: number | 'auto'; workerUser: string };
  dns: {
    daemon: DnsDaemon;
    ttl: number;
    primary: NameServer;
    secondaries: NameServer[];
    hostmaster: string;
    controlPort: number;
    allowNonGlobal: boolean;
    responsesPerSecond: number;
  };
  firewall: { enabled: boolean; table: string; sshNewPerSecond: number; sshBurst: number };
  /** What /metrics exposes beyond the fleet-wide series. */
  metrics: { perPod: boolean; tunnelBytes: boolean };
  ca: {
    validityDays: number; renewBeforeDays: number; allowedCurves: string[]; minRsaBits: number;
    issuer: 'private' | 'acme';
    acme: AcmeConfig | null;
  };
  subdomains: { reservedNames: string[]; defaultLifespanSeconds: number | null };
  probe: { timeoutMs: number; concurrency: number; recoverAfter: number; flapWindowSeconds: number; prompt: boolean };
  api: { ratePerMinute: number; maxBodyBytes: number };
  state: { url?: string; password_file?: string; pool_size: number; connect_timeout_ms: number; statement_timeout_ms: number };
  paths: { state: string; ca: string; sshd: string; nginx: string; dns: string; run: string; log: string };
}
