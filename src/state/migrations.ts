/**
 * Versioned schema migrations, one numbered set for both engines. On SQLite PRAGMA user_version holds the
 * version; on PostgreSQL the schema_version row. Each migration runs in one transaction. Never edit a
 * released migration: add the next one.
 *
 * PostgreSQL stores begin at version 9 (the first with PostgreSQL): its whole schema at that version is
 * one statement list (engines/postgres-schema.ts); every later migration carries its PostgreSQL form.
 */
import type Database from 'better-sqlite3';
import { parsePublicKey } from '../ssh/pubkey.js';

export interface Migration {
  version: number;
  description: string;
  sql: string;
  /** Data changes SQL cannot express, in the same transaction, after `sql` (SQLite stores made before PostgreSQL existed). */
  run?: (db: Database.Database) => void;
  /** The same change on PostgreSQL (from version 10; versions up to 9 are in its baseline schema). */
  postgres?: string;
}

/** The version PostgreSQL's baseline schema stands for. */
export const POSTGRES_BASELINE_VERSION = 9;

export const MIGRATIONS: Migration[] = [
  {
    version: 1,
    description: 'subdomains, ports, pod ssh keys, certificates, mappings, probe results, tokens',
    sql: `
CREATE TABLE meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
) STRICT;

CREATE TABLE tokens (
  id               TEXT PRIMARY KEY,
  secret_hash      TEXT NOT NULL UNIQUE,
  label            TEXT NOT NULL DEFAULT '',
  max_ports        INTEGER NOT NULL CHECK (max_ports > 0),
  lifespan_seconds INTEGER CHECK (lifespan_seconds IS NULL OR lifespan_seconds > 0),
  extendable       INTEGER NOT NULL DEFAULT 0,
  single_use       INTEGER NOT NULL DEFAULT 0,
  uses             INTEGER NOT NULL DEFAULT 0,
  created_at       INTEGER NOT NULL,
  revoked_at       INTEGER
) STRICT;

CREATE TABLE subdomains (
  id               TEXT PRIMARY KEY,
  name             TEXT NOT NULL UNIQUE,
  fqdn             TEXT NOT NULL UNIQUE,
  status           TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'expired')),
  created_at       INTEGER NOT NULL,
  expires_at       INTEGER,
  passthrough      INTEGER NOT NULL DEFAULT 0,
  token_id         TEXT REFERENCES tokens(id) ON DELETE SET NULL,
  secret_hash      TEXT UNIQUE,
  claim_hash       TEXT UNIQUE,
  route            TEXT NOT NULL DEFAULT 'server' CHECK (route IN ('server', 'direct')),
  route_changed_at INTEGER,
  route_reason     TEXT,
  direct_ipv4      TEXT,
  probe_streak     INTEGER NOT NULL DEFAULT 0,
  last_fallback_at INTEGER,
  observed_ipv4    TEXT,
  observed_at      INTEGER
) STRICT;

CREATE TABLE ports (
  port         INTEGER PRIMARY KEY,
  subdomain_id TEXT NOT NULL REFERENCES subdomains(id) ON DELETE CASCADE,
  protocol     TEXT NOT NULL CHECK (protocol IN ('http', 'https', 'tcp')),
  position     INTEGER NOT NULL,
  UNIQUE (subdomain_id, position)
) STRICT;
CREATE INDEX ports_by_subdomain ON ports(subdomain_id);

CREATE TABLE ssh_keys (
  subdomain_id TEXT PRIMARY KEY REFERENCES subdomains(id) ON DELETE CASCADE,
  algorithm    TEXT NOT NULL,
  public_key   TEXT NOT NULL,
  fingerprint  TEXT NOT NULL UNIQUE,
  bits         INTEGER,
  added_at     INTEGER NOT NULL
) STRICT;

CREATE TABLE certificates (
  serial        TEXT PRIMARY KEY,
  subdomain_id  TEXT REFERENCES subdomains(id) ON DELETE SET NULL,
  fqdn          TEXT NOT NULL,
  kind          TEXT NOT NULL CHECK (kind IN ('pod', 'server')),
  not_before    INTEGER NOT NULL,
  not_after     INTEGER NOT NULL,
  sha256        TEXT NOT NULL,
  issued_at     INTEGER NOT NULL,
  revoked_at    INTEGER,
  revoke_reason TEXT
) STRICT;
CREATE INDEX certificates_by_subdomain ON certificates(subdomain_id);

CREATE TABLE mappings (
  subdomain_id  TEXT NOT NULL REFERENCES subdomains(id) ON DELETE CASCADE,
  external_port INTEGER NOT NULL,
  internal_port INTEGER NOT NULL,
  external_ip   TEXT,
  reported_at   INTEGER NOT NULL,
  PRIMARY KEY (subdomain_id, external_port)
) STRICT;

CREATE TABLE probe_results (
  id           INTEGER PRIMARY KEY AUTOINCREMENT,
  subdomain_id TEXT NOT NULL REFERENCES subdomains(id) ON DELETE CASCADE,
  at           INTEGER NOT NULL,
  address      TEXT,
  ok           INTEGER NOT NULL,
  route        TEXT NOT NULL,
  detail       TEXT NOT NULL
) STRICT;
CREATE INDEX probe_results_by_subdomain ON probe_results(subdomain_id, at);
`,
  },
  {
    version: 2,
    description: 'why a pod has no (or fewer) router mappings, as it last reported',
    sql: `ALTER TABLE subdomains ADD COLUMN mapping_note TEXT;`,
  },
  {
    version: 3,
    description: 'token quotas on subdomains and total ports; pod keys in their canonical encoding',
    // NULL: a token made before quotas existed (unbounded, as it was issued; `token list` says so).
    sql: `ALTER TABLE tokens ADD COLUMN max_subdomains INTEGER CHECK (max_subdomains IS NULL OR max_subdomains > 0);
ALTER TABLE tokens ADD COLUMN max_total_ports INTEGER CHECK (max_total_ports IS NULL OR max_total_ports > 0);`,
    run: (db) => {
      // Keys were compared by their raw blob: re-encode them so that a padded copy of a key is the same key.
      // A key registered twice that way (the second copy shadowed the first pod's logins) stays with the pod
      // that registered it first; the later copy is dropped, and that pod registers a key of its own again.
      const rows = db.prepare('SELECT subdomain_id, public_key FROM ssh_keys ORDER BY added_at, subdomain_id').all() as { subdomain_id: string; public_key: string }[];
      const update = db.prepare('UPDATE ssh_keys SET public_key = ?, fingerprint = ? WHERE subdomain_id = ?');
      const drop = db.prepare('DELETE FROM ssh_keys WHERE subdomain_id = ?');
      const seen = new Set<string>();
      db.prepare("UPDATE ssh_keys SET fingerprint = 'migrating:' || subdomain_id").run();
      for (const r of rows) {
        let k: ReturnType<typeof parsePublicKey>;
        try {
          k = parsePublicKey(r.public_key);
        } catch {
          drop.run(r.subdomain_id);
          continue;
        }
        if (seen.has(k.fingerprint)) drop.run(r.subdomain_id);
        else update.run(k.publicKey, k.fingerprint, r.subdomain_id);
        seen.add(k.fingerprint);
      }
    },
  },
  {
    version: 4,
    description: 'what became of removed subdomains, so that their pods are told (and not "wrong credentials")',
    sql: `CREATE TABLE removed_subdomains (
  id          TEXT PRIMARY KEY,
  fqdn        TEXT NOT NULL,
  secret_hash TEXT,
  removed_at  INTEGER NOT NULL,
  reason      TEXT NOT NULL
) STRICT;
CREATE INDEX removed_subdomains_by_time ON removed_subdomains(removed_at);`,
  },
  {
    version: 5,
    description: 'certificates from an ACME CA: which issuer signed each, the chain of the public ones, orders and their dns-01 challenges',
    sql: `ALTER TABLE certificates ADD COLUMN issuer TEXT NOT NULL DEFAULT 'private' CHECK (issuer IN ('private', 'acme'));
ALTER TABLE certificates ADD COLUMN chain_pem TEXT;
ALTER TABLE certificates ADD COLUMN key_sha256 TEXT;
CREATE TABLE acme_orders (
  id              TEXT PRIMARY KEY,
  subdomain_id    TEXT REFERENCES subdomains(id) ON DELETE CASCADE,
  purpose         TEXT NOT NULL CHECK (purpose IN ('pod', 'server')),
  names           TEXT NOT NULL,
  csr_pem         TEXT NOT NULL,
  key_sha256      TEXT NOT NULL,
  state           TEXT NOT NULL CHECK (state IN ('queued', 'working', 'valid', 'failed', 'cancelled')),
  attempts        INTEGER NOT NULL DEFAULT 0,
  next_attempt_at INTEGER NOT NULL,
  last_error      TEXT,
  cert_serial     TEXT,
  created_at      INTEGER NOT NULL,
  updated_at      INTEGER NOT NULL
) STRICT;
CREATE INDEX acme_orders_due ON acme_orders(state, next_attempt_at);
CREATE INDEX acme_orders_by_subdomain ON acme_orders(subdomain_id);
CREATE TABLE acme_challenges (
  order_id TEXT NOT NULL REFERENCES acme_orders(id) ON DELETE CASCADE,
  owner    TEXT NOT NULL,
  value    TEXT NOT NULL,
  PRIMARY KEY (order_id, owner, value)
) STRICT;
CREATE TABLE acme_failures (
  name TEXT NOT NULL,
  at   INTEGER NOT NULL
) STRICT;
CREATE INDEX acme_failures_by_name ON acme_failures(name, at);`,
  },
  {
    version: 6,
    description: 'indexes for lookups every setup and every apply make at fleet scale: subdomains by token, certificates by fingerprint and by name',
    sql: `CREATE INDEX subdomains_by_token ON subdomains(token_id);
CREATE INDEX certificates_by_sha256 ON certificates(sha256);
CREATE INDEX certificates_by_fqdn ON certificates(fqdn);`,
  },
  {
    version: 7,
    description: 'the render journal: which subdomains changed since each rendered file was written, kept by triggers so that no write can be missed',
    // Triggers rather than calls in every writer: a write that changes what a subdomain renders to can
    // come from the CLI, the API, the probe, expiry or a migration, and one forgotten call would leave a
    // file stale until the next full apply. The journal holds one row per subdomain name (its latest
    // change); render_seq counts changes; pruned_through says up to which change rows may be gone.
    sql: `CREATE TABLE render_seq (
  id             INTEGER PRIMARY KEY CHECK (id = 1),
  seq            INTEGER NOT NULL,
  pruned_through INTEGER NOT NULL
) STRICT;
INSERT INTO render_seq (id, seq, pruned_through) VALUES (1, 0, 0);
CREATE TABLE render_journal (
  name TEXT PRIMARY KEY,
  seq  INTEGER NOT NULL
) STRICT;
CREATE INDEX render_journal_by_seq ON render_journal(seq);
${journalTrigger('subdomains_insert', 'INSERT ON subdomains', ['NEW.name'])}
${journalTrigger('subdomains_delete', 'DELETE ON subdomains', ['OLD.name'])}
${journalTrigger('subdomains_update', 'UPDATE OF name, fqdn, status, passthrough, route, direct_ipv4 ON subdomains', ['OLD.name', 'NEW.name'])}
${journalTrigger('ports_insert', 'INSERT ON ports', ['(SELECT name FROM subdomains WHERE id = NEW.subdomain_id)'])}
${journalTrigger('ports_delete', 'DELETE ON ports', ['(SELECT name FROM subdomains WHERE id = OLD.subdomain_id)'])}
${journalTrigger('ports_update', 'UPDATE ON ports', ['(SELECT name FROM subdomains WHERE id = OLD.subdomain_id)', '(SELECT name FROM subdomains WHERE id = NEW.subdomain_id)'])}
${journalTrigger('keys_insert', 'INSERT ON ssh_keys', ['(SELECT name FROM subdomains WHERE id = NEW.subdomain_id)'])}
${journalTrigger('keys_delete', 'DELETE ON ssh_keys', ['(SELECT name FROM subdomains WHERE id = OLD.subdomain_id)'])}
${journalTrigger('keys_update', 'UPDATE ON ssh_keys', ['(SELECT name FROM subdomains WHERE id = OLD.subdomain_id)', '(SELECT name FROM subdomains WHERE id = NEW.subdomain_id)'])}`,
  },
  {
    version: 8,
    description: 'the direct route per address family: an IPv6 route decided on its own (the pod\'s own address, its pinholes), and how each opening was made (UPnP IGD, NAT-PMP, an IGD2 pinhole, nothing to open)',
    // mappings gets a family and a method, and its key must include the family: SQLite cannot change a
    // primary key in place, so the table is rebuilt. The render journal's update trigger is recreated
    // to follow the IPv6 route too (the AAAA record is rendered from it).
    sql: `ALTER TABLE subdomains ADD COLUMN route6 TEXT NOT NULL DEFAULT 'server' CHECK (route6 IN ('server', 'direct'));
ALTER TABLE subdomains ADD COLUMN route6_changed_at INTEGER;
ALTER TABLE subdomains ADD COLUMN route6_reason TEXT;
ALTER TABLE subdomains ADD COLUMN direct_ipv6 TEXT;
ALTER TABLE subdomains ADD COLUMN probe6_streak INTEGER NOT NULL DEFAULT 0;
ALTER TABLE subdomains ADD COLUMN last_fallback6_at INTEGER;
ALTER TABLE subdomains ADD COLUMN observed_ipv6 TEXT;
ALTER TABLE subdomains ADD COLUMN observed6_at INTEGER;
ALTER TABLE subdomains ADD COLUMN reported_ipv6 TEXT;
ALTER TABLE subdomains ADD COLUMN ipv6_note TEXT;
CREATE TABLE mappings_v8 (
  subdomain_id  TEXT NOT NULL REFERENCES subdomains(id) ON DELETE CASCADE,
  family        INTEGER NOT NULL DEFAULT 4 CHECK (family IN (4, 6)),
  external_port INTEGER NOT NULL,
  internal_port INTEGER NOT NULL,
  external_ip   TEXT,
  via           TEXT NOT NULL DEFAULT 'upnp' CHECK (via IN ('upnp', 'natpmp', 'pinhole', 'open')),
  lease_seconds INTEGER,
  reported_at   INTEGER NOT NULL,
  PRIMARY KEY (subdomain_id, family, external_port)
) STRICT;
INSERT INTO mappings_v8 (subdomain_id, family, external_port, internal_port, external_ip, via, reported_at)
  SELECT subdomain_id, 4, external_port, internal_port, external_ip, 'upnp', reported_at FROM mappings;
DROP TABLE mappings;
ALTER TABLE mappings_v8 RENAME TO mappings;
ALTER TABLE probe_results ADD COLUMN family INTEGER NOT NULL DEFAULT 4 CHECK (family IN (4, 6));
DROP TRIGGER render_journal_subdomains_update;
${journalTrigger('subdomains_update', 'UPDATE OF name, fqdn, status, passthrough, route, direct_ipv4, route6, direct_ipv6 ON subdomains', ['OLD.name', 'NEW.name'])}`,
  },
  {
    version: 9,
    description: 'what the metrics need from every process (counters, histograms and last-run marks the probe, apply and the API keep in the store), and operator credentials for the status page',
    // Counters live in the store, not in one process's memory: the probe runs from a timer, apply from the
    // CLI, the API and the watcher, and Prometheus scrapes only the API. Each row is one series: the metric
    // name and its labels in a canonical JSON form; a process adds to it in the transaction that did the work.
    sql: `CREATE TABLE metric_counters (
  name   TEXT NOT NULL,
  labels TEXT NOT NULL,
  value  REAL NOT NULL,
  PRIMARY KEY (name, labels)
) STRICT;
CREATE TABLE metric_marks (
  name  TEXT PRIMARY KEY,
  value REAL NOT NULL,
  at    INTEGER NOT NULL
) STRICT;
CREATE TABLE operators (
  name        TEXT PRIMARY KEY,
  secret_hash TEXT NOT NULL UNIQUE,
  created_at  INTEGER NOT NULL,
  last_used   INTEGER
) STRICT;`,
  },
  {
    version: 10,
    description: 'what several relays must share: the online sessions each relay holds (with a lease it renews), the private CA\'s index, serial and CRL number, and the order ACME orders were queued in (SQLite\'s rowid is not portable)',
    // The session holder on the data path still writes its records to local files (it must never wait on
    // the store); the API mirrors them into `sessions`. The CA's files are openssl's own formats, kept
    // whole: openssl reads and writes them, pipe2me loads them before and saves them after, under the lock.
    sql: `CREATE TABLE sessions (
  subdomain_id TEXT NOT NULL REFERENCES subdomains(id) ON DELETE CASCADE,
  relay        TEXT NOT NULL,
  family       INTEGER NOT NULL CHECK (family IN (4, 6)),
  address      TEXT NOT NULL,
  client_port  INTEGER NOT NULL,
  started_at   INTEGER NOT NULL,
  lease_until  INTEGER NOT NULL,
  PRIMARY KEY (subdomain_id, relay)
) STRICT;
CREATE INDEX sessions_by_relay ON sessions(relay, lease_until);
CREATE TABLE ca_files (
  name       TEXT PRIMARY KEY,
  content    TEXT NOT NULL,
  updated_at INTEGER NOT NULL
) STRICT;
ALTER TABLE acme_orders ADD COLUMN seq INTEGER;
UPDATE acme_orders SET seq = rowid;`,
    postgres: `CREATE TABLE sessions (
  subdomain_id text COLLATE "C" NOT NULL REFERENCES subdomains(id) ON DELETE CASCADE,
  relay        text COLLATE "C" NOT NULL,
  family       bigint NOT NULL CHECK (family IN (4, 6)),
  address      text COLLATE "C" NOT NULL,
  client_port  bigint NOT NULL,
  started_at   bigint NOT NULL,
  lease_until  bigint NOT NULL,
  PRIMARY KEY (subdomain_id, relay)
);
CREATE INDEX sessions_by_relay ON sessions(relay, lease_until);
CREATE TABLE ca_files (
  name       text COLLATE "C" PRIMARY KEY,
  content    text COLLATE "C" NOT NULL,
  updated_at bigint NOT NULL
);
ALTER TABLE acme_orders ADD COLUMN seq bigint;`,
  },
  {
    version: 11,
    description: 'several relays: each relay\'s heartbeat (a lease it renews, its ssh host key for the pods to pin, whether it is up or draining), and which relay a pod\'s name points at while it is not direct (the one holding its newest session)',
    // subdomains.relay is written only when it changes (by the session mirror and the relays\' sweep), so
    // the render journal sees a pod move, not every lease renewal. The journal's update trigger is
    // recreated to follow it.
    sql: `CREATE TABLE relays (
  name        TEXT PRIMARY KEY,
  host_key    TEXT,
  state       TEXT NOT NULL DEFAULT 'up' CHECK (state IN ('up', 'down', 'draining')),
  lease_until INTEGER NOT NULL,
  changed_at  INTEGER NOT NULL
) STRICT;
ALTER TABLE subdomains ADD COLUMN relay TEXT;
DROP TRIGGER render_journal_subdomains_update;
${journalTrigger('subdomains_update', 'UPDATE OF name, fqdn, status, passthrough, route, direct_ipv4, route6, direct_ipv6, relay ON subdomains', ['OLD.name', 'NEW.name'])}`,
    postgres: `CREATE TABLE relays (
  name        text COLLATE "C" PRIMARY KEY,
  host_key    text COLLATE "C",
  state       text COLLATE "C" NOT NULL DEFAULT 'up' CHECK (state IN ('up', 'down', 'draining')),
  lease_until bigint NOT NULL,
  changed_at  bigint NOT NULL
);
ALTER TABLE subdomains ADD COLUMN relay text COLLATE "C";
DROP TRIGGER render_journal_subdomains_update ON subdomains;
CREATE TRIGGER render_journal_subdomains_update
  AFTER UPDATE OF name, fqdn, status, passthrough, route, direct_ipv4, route6, direct_ipv6, relay ON subdomains
  FOR EACH ROW EXECUTE FUNCTION render_journal_subdomains();`,
  },
  {
    version: 12,
    description: 'address slots: a subdomain\'s slot (which of every relay\'s addresses it is published at), and ports unique per slot instead of fleet-wide',
    // SQLite cannot change a primary key: ports is rebuilt (every row in slot 0, as before), with its index
    // and the render journal's triggers, which go with the old table.
    sql: `ALTER TABLE subdomains ADD COLUMN slot INTEGER NOT NULL DEFAULT 0;
CREATE TABLE ports_by_slot (
  slot         INTEGER NOT NULL DEFAULT 0,
  port         INTEGER NOT NULL,
  subdomain_id TEXT NOT NULL REFERENCES subdomains(id) ON DELETE CASCADE,
  protocol     TEXT NOT NULL CHECK (protocol IN ('http', 'https', 'tcp')),
  position     INTEGER NOT NULL,
  PRIMARY KEY (slot, port),
  UNIQUE (subdomain_id, position)
) STRICT;
INSERT INTO ports_by_slot (slot, port, subdomain_id, protocol, position) SELECT 0, port, subdomain_id, protocol, position FROM ports;
DROP TABLE ports;
ALTER TABLE ports_by_slot RENAME TO ports;
CREATE INDEX ports_by_subdomain ON ports(subdomain_id);
${journalTrigger('ports_insert', 'INSERT ON ports', ['(SELECT name FROM subdomains WHERE id = NEW.subdomain_id)'])}
${journalTrigger('ports_delete', 'DELETE ON ports', ['(SELECT name FROM subdomains WHERE id = OLD.subdomain_id)'])}
${journalTrigger('ports_update', 'UPDATE ON ports', ['(SELECT name FROM subdomains WHERE id = OLD.subdomain_id)', '(SELECT name FROM subdomains WHERE id = NEW.subdomain_id)'])}`,
    postgres: `ALTER TABLE subdomains ADD COLUMN slot bigint NOT NULL DEFAULT 0;
ALTER TABLE ports ADD COLUMN slot bigint NOT NULL DEFAULT 0;
ALTER TABLE ports DROP CONSTRAINT ports_pkey;
ALTER TABLE ports ADD PRIMARY KEY (slot, port);`,
  },
  {
    version: 13,
    description: 'ACME with relays: each relay\'s account (its key stays on the relay; the store says which account URL goes with which key at which CA), the relay an order is bound to (the server\'s own names: the relay holding the order\'s key) and the relay that last worked it',
    // The account URL was one meta row per directory: with several relays it named one relay's account
    // for every relay's key. It is dropped; each relay finds its own again by registering its key (a CA
    // answers an existing key with its existing account, RFC 8555 7.3.1).
    // An open order for the server's own names from before is bound to no relay, and only the relay that
    // holds its key could install it: cancelled, each relay orders its own at its next apply.
    sql: `CREATE TABLE acme_accounts (
  directory_url TEXT NOT NULL,
  key_sha256    TEXT NOT NULL,
  url           TEXT NOT NULL,
  relay         TEXT NOT NULL,
  email         TEXT NOT NULL,
  created_at    INTEGER NOT NULL,
  PRIMARY KEY (directory_url, key_sha256)
) STRICT;
ALTER TABLE acme_orders ADD COLUMN relay TEXT;
ALTER TABLE acme_orders ADD COLUMN worked_by TEXT;
DELETE FROM meta WHERE key LIKE 'acme_account_url %';
UPDATE acme_orders SET state = 'cancelled' WHERE subdomain_id IS NULL AND state IN ('queued', 'working');`,
    postgres: `CREATE TABLE acme_accounts (
  directory_url text COLLATE "C" NOT NULL,
  key_sha256    text COLLATE "C" NOT NULL,
  url           text COLLATE "C" NOT NULL,
  relay         text COLLATE "C" NOT NULL,
  email         text COLLATE "C" NOT NULL,
  created_at    bigint NOT NULL,
  PRIMARY KEY (directory_url, key_sha256)
);
ALTER TABLE acme_orders ADD COLUMN relay text COLLATE "C";
ALTER TABLE acme_orders ADD COLUMN worked_by text COLLATE "C";
DELETE FROM meta WHERE key LIKE 'acme_account_url %';
UPDATE acme_orders SET state = 'cancelled' WHERE subdomain_id IS NULL AND state IN ('queued', 'working');`,
  },
];

/**
 * A trigger that records, for each name the change touches, that it changed (a name that is NULL — the
 * subdomain of a cascaded delete, already gone — is skipped: its own delete recorded it).
 */
function journalTrigger(id: string, event: string, names: string[]): string {
  const rows = names.map((n) => `  INSERT INTO render_journal (name, seq) SELECT n, (SELECT seq FROM render_seq) FROM (SELECT ${n} AS n) WHERE n IS NOT NULL
    ON CONFLICT (name) DO UPDATE SET seq = excluded.seq;`).join('\n');
  return `CREATE TRIGGER render_journal_${id} AFTER ${event} BEGIN
  UPDATE render_seq SET seq = seq + 1;
${rows}
END;`;
}

export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version;
