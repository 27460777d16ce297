/**
 * The store's tables as Kysely sees them: one description for both engines, so that every query is
 * type-checked against the schema the migrations make (src/state/migrations.ts; PostgreSQL's DDL in
 * engines/postgres-schema.ts). Flags are 0/1 integers and times epoch seconds on both engines.
 */
import type { Generated } from 'kysely';

type Flag = number;

export interface MetaTable { key: string; value: string }

export interface TokensTable {
  id: string;
  secret_hash: string;
  label: Generated<string>;
  max_ports: number;
  lifespan_seconds: number | null;
  extendable: Generated<Flag>;
  single_use: Generated<Flag>;
  uses: Generated<number>;
  created_at: number;
  revoked_at: number | null;
  max_subdomains: number | null;
  max_total_ports: number | null;
}

export interface SubdomainsTable {
  id: string;
  name: string;
  fqdn: string;
  status: Generated<'active' | 'expired'>;
  created_at: number;
  expires_at: number | null;
  passthrough: Generated<Flag>;
  token_id: string | null;
  secret_hash: string | null;
  claim_hash: string | null;
  route: Generated<'server' | 'direct'>;
  route_changed_at: number | null;
  route_reason: string | null;
  direct_ipv4: string | null;
  probe_streak: Generated<number>;
  last_fallback_at: number | null;
  observed_ipv4: string | null;
  observed_at: number | null;
  mapping_note: string | null;
  route6: Generated<'server' | 'direct'>;
  route6_changed_at: number | null;
  route6_reason: string | null;
  direct_ipv6: string | null;
  probe6_streak: Generated<number>;
  last_fallback6_at: number | null;
  observed_ipv6: string | null;
  observed6_at: number | null;
  reported_ipv6: string | null;
  ipv6_note: string | null;
  /** Migration 11: the relay holding the pod's newest session (its name points there unless direct). */
  relay: string | null;
  /** Migration 12: the address slot it is published at (0 without slots), on whichever relay holds it. */
  slot: Generated<number>;
}

/** Migration 12: ports are unique per address slot. */
export interface PortsTable { slot: Generated<number>; port: number; subdomain_id: string; protocol: 'http' | 'https' | 'tcp'; position: number }

export interface SshKeysTable { subdomain_id: string; algorithm: string; public_key: string; fingerprint: string; bits: number | null; added_at: number }

export interface CertificatesTable {
  serial: string;
  subdomain_id: string | null;
  fqdn: string;
  kind: 'pod' | 'server';
  not_before: number;
  not_after: number;
  sha256: string;
  issued_at: number;
  revoked_at: number | null;
  revoke_reason: string | null;
  issuer: Generated<'private' | 'acme'>;
  chain_pem: string | null;
  key_sha256: string | null;
}

export interface MappingsTable {
  subdomain_id: string;
  family: Generated<4 | 6>;
  external_port: number;
  internal_port: number;
  external_ip: string | null;
  via: Generated<'upnp' | 'natpmp' | 'pinhole' | 'open'>;
  lease_seconds: number | null;
  reported_at: number;
}

export interface ProbeResultsTable {
  id: Generated<number>;
  subdomain_id: string;
  at: number;
  address: string | null;
  ok: Flag;
  route: string;
  detail: string;
  family: Generated<4 | 6>;
}

export interface RemovedSubdomainsTable { id: string; fqdn: string; secret_hash: string | null; removed_at: number; reason: string }

export interface AcmeOrdersTable {
  id: string;
  subdomain_id: string | null;
  purpose: 'pod' | 'server';
  names: string;
  csr_pem: string;
  key_sha256: string;
  state: 'queued' | 'working' | 'valid' | 'failed' | 'cancelled';
  attempts: Generated<number>;
  next_attempt_at: number;
  last_error: string | null;
  cert_serial: string | null;
  created_at: number;
  updated_at: number;
  /** Migration 10: the order orders were queued in (times are seconds; two in one second stay ordered). */
  seq: number | null;
  /** Migration 13: the relay that must work this order (the one holding its key: the server's own names), or null for any. */
  relay: string | null;
  /** Migration 13: the relay that last took it. */
  worked_by: string | null;
}

/** Migration 13: an ACME account per relay key and CA (the key itself is a file on its relay). */
export interface AcmeAccountsTable { directory_url: string; key_sha256: string; url: string; relay: string; email: string; created_at: number }

export interface AcmeChallengesTable { order_id: string; owner: string; value: string }
export interface AcmeFailuresTable { name: string; at: number }

export interface RenderSeqTable { id: number; seq: number; pruned_through: number }
export interface RenderJournalTable { name: string; seq: number }

export interface MetricCountersTable { name: string; labels: string; value: number }
export interface MetricMarksTable { name: string; value: number; at: number }
export interface OperatorsTable { name: string; secret_hash: string; created_at: number; last_used: number | null }

/** Migration 10: the online sessions each relay holds, with a lease that relay renews (rows past it are not online). */
export interface SessionsTable {
  subdomain_id: string;
  relay: string;
  family: 4 | 6;
  address: string;
  client_port: number;
  started_at: number;
  lease_until: number;
}

/** Migration 10: the private CA's bookkeeping files (openssl's index, serial, CRL number) by name, so that it is shared. */
export interface CaFilesTable { name: string; content: string; updated_at: number }

/** Migration 11: one row per relay that ever ran, kept alive by its heartbeat. */
export interface RelaysTable {
  name: string;
  host_key: string | null;
  state: Generated<'up' | 'down' | 'draining'>;
  lease_until: number;
  changed_at: number;
}

export interface Schema {
  meta: MetaTable;
  tokens: TokensTable;
  subdomains: SubdomainsTable;
  ports: PortsTable;
  ssh_keys: SshKeysTable;
  certificates: CertificatesTable;
  mappings: MappingsTable;
  probe_results: ProbeResultsTable;
  removed_subdomains: RemovedSubdomainsTable;
  acme_orders: AcmeOrdersTable;
  acme_challenges: AcmeChallengesTable;
  acme_failures: AcmeFailuresTable;
  acme_accounts: AcmeAccountsTable;
  render_seq: RenderSeqTable;
  render_journal: RenderJournalTable;
  metric_counters: MetricCountersTable;
  metric_marks: MetricMarksTable;
  operators: OperatorsTable;
  sessions: SessionsTable;
  ca_files: CaFilesTable;
  relays: RelaysTable;
}

/** Every table, in an order that satisfies the foreign keys (parents first): what `state copy` walks. */
export const TABLES = [
  'meta', 'tokens', 'subdomains', 'ports', 'ssh_keys', 'certificates', 'mappings', 'probe_results', 'removed_subdomains',
  'acme_orders', 'acme_challenges', 'acme_failures', 'render_seq', 'render_journal', 'metric_counters', 'metric_marks',
  'operators', 'sessions', 'ca_files', 'relays', 'acme_accounts',
] as const satisfies readonly (keyof Schema)[];
