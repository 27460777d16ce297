/**
 * The PostgreSQL schema: what a SQLite store holds after migrations 1–9 (src/state/migrations.ts), as one
 * DDL script for an empty database. Same tables, columns in the same order, the same NOT NULLs, defaults,
 * CHECKs, keys, foreign keys and index names, so that the same queries give the same answers on both.
 *
 * Types: INTEGER is `bigint` (epoch seconds, counts, ports), except the 0/1 flags (`integer`); TEXT is
 * `text COLLATE "C"` (byte order, as SQLite's BINARY: ORDER BY and comparisons must sort rendered files
 * the same on both engines); REAL is `double precision`; `INTEGER PRIMARY KEY AUTOINCREMENT` is an identity.
 *
 * The render journal (migrations 7 and 8) is kept by PL/pgSQL triggers with the same names and the same
 * effect as SQLite's: every row event bumps render_seq.seq by one, then records the affected subdomain
 * names at that seq (an UPDATE of subdomains: the old name, then the new one; ports and ssh_keys: the name
 * looked up through subdomain_id, old row then new row; a name that is NULL is skipped). One difference
 * in how the engines order a cascaded delete is made up for: see render_journal_subdomains_delete.
 */

/**
 * Where a PostgreSQL store keeps its schema version (SQLite's PRAGMA user_version). The migration runner
 * creates it before anything else (as CREATE TABLE IF NOT EXISTS: it runs on every open).
 */
export const POSTGRES_VERSION_TABLE = `CREATE TABLE schema_version (
  id      integer PRIMARY KEY CHECK (id = 1),
  version integer NOT NULL
);`;

const T = 'text COLLATE "C"';

/** The schema after migration 9, on an empty database (run inside one transaction). */
export const POSTGRES_SCHEMA_V9 = `
CREATE TABLE meta (
  key   ${T} PRIMARY KEY,
  value ${T} NOT NULL
);

CREATE TABLE tokens (
  id               ${T} PRIMARY KEY,
  secret_hash      ${T} NOT NULL UNIQUE,
  label            ${T} NOT NULL DEFAULT '',
  max_ports        bigint NOT NULL CHECK (max_ports > 0),
  lifespan_seconds bigint CHECK (lifespan_seconds IS NULL OR lifespan_seconds > 0),
  extendable       integer NOT NULL DEFAULT 0,
  single_use       integer NOT NULL DEFAULT 0,
  uses             bigint NOT NULL DEFAULT 0,
  created_at       bigint NOT NULL,
  revoked_at       bigint,
  max_subdomains   bigint CHECK (max_subdomains IS NULL OR max_subdomains > 0),
  max_total_ports  bigint CHECK (max_total_ports IS NULL OR max_total_ports > 0)
);

CREATE TABLE subdomains (
  id                ${T} PRIMARY KEY,
  name              ${T} NOT NULL UNIQUE,
  fqdn              ${T} NOT NULL UNIQUE,
  status            ${T} NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'expired')),
  created_at        bigint NOT NULL,
  expires_at        bigint,
  passthrough       integer NOT NULL DEFAULT 0,
  token_id          ${T} REFERENCES tokens(id) ON DELETE SET NULL,
  secret_hash       ${T} UNIQUE,
  claim_hash        ${T} UNIQUE,
  route             ${T} NOT NULL DEFAULT 'server' CHECK (route IN ('server', 'direct')),
  route_changed_at  bigint,
  route_reason      ${T},
  direct_ipv4       ${T},
  probe_streak      bigint NOT NULL DEFAULT 0,
  last_fallback_at  bigint,
  observed_ipv4     ${T},
  observed_at       bigint,
  mapping_note      ${T},
  route6            ${T} NOT NULL DEFAULT 'server' CHECK (route6 IN ('server', 'direct')),
  route6_changed_at bigint,
  route6_reason     ${T},
  direct_ipv6       ${T},
  probe6_streak     bigint NOT NULL DEFAULT 0,
  last_fallback6_at bigint,
  observed_ipv6     ${T},
  observed6_at      bigint,
  reported_ipv6     ${T},
  ipv6_note         ${T}
);
CREATE INDEX subdomains_by_token ON subdomains(token_id);

CREATE TABLE ports (
  port         bigint PRIMARY KEY,
  subdomain_id ${T} NOT NULL REFERENCES subdomains(id) ON DELETE CASCADE,
  protocol     ${T} NOT NULL CHECK (protocol IN ('http', 'https', 'tcp')),
  position     bigint NOT NULL,
  UNIQUE (subdomain_id, position)
);
CREATE INDEX ports_by_subdomain ON ports(subdomain_id);

CREATE TABLE ssh_keys (
  subdomain_id ${T} PRIMARY KEY REFERENCES subdomains(id) ON DELETE CASCADE,
  algorithm    ${T} NOT NULL,
  public_key   ${T} NOT NULL,
  fingerprint  ${T} NOT NULL UNIQUE,
  bits         bigint,
  added_at     bigint NOT NULL
);

CREATE TABLE certificates (
  serial        ${T} PRIMARY KEY,
  subdomain_id  ${T} REFERENCES subdomains(id) ON DELETE SET NULL,
  fqdn          ${T} NOT NULL,
  kind          ${T} NOT NULL CHECK (kind IN ('pod', 'server')),
  not_before    bigint NOT NULL,
  not_after     bigint NOT NULL,
  sha256        ${T} NOT NULL,
  issued_at     bigint NOT NULL,
  revoked_at    bigint,
  revoke_reason ${T},
  issuer        ${T} NOT NULL DEFAULT 'private' CHECK (issuer IN ('private', 'acme')),
  chain_pem     ${T},
  key_sha256    ${T}
);
CREATE INDEX certificates_by_subdomain ON certificates(subdomain_id);
CREATE INDEX certificates_by_sha256 ON certificates(sha256);
CREATE INDEX certificates_by_fqdn ON certificates(fqdn);

CREATE TABLE mappings (
  subdomain_id  ${T} NOT NULL REFERENCES subdomains(id) ON DELETE CASCADE,
  family        bigint NOT NULL DEFAULT 4 CHECK (family IN (4, 6)),
  external_port bigint NOT NULL,
  internal_port bigint NOT NULL,
  external_ip   ${T},
  via           ${T} NOT NULL DEFAULT 'upnp' CHECK (via IN ('upnp', 'natpmp', 'pinhole', 'open')),
  lease_seconds bigint,
  reported_at   bigint NOT NULL,
  PRIMARY KEY (subdomain_id, family, external_port)
);

CREATE TABLE probe_results (
  id           bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  subdomain_id ${T} NOT NULL REFERENCES subdomains(id) ON DELETE CASCADE,
  at           bigint NOT NULL,
  address      ${T},
  ok           integer NOT NULL,
  route        ${T} NOT NULL,
  detail       ${T} NOT NULL,
  family       bigint NOT NULL DEFAULT 4 CHECK (family IN (4, 6))
);
CREATE INDEX probe_results_by_subdomain ON probe_results(subdomain_id, at);

CREATE TABLE removed_subdomains (
  id          ${T} PRIMARY KEY,
  fqdn        ${T} NOT NULL,
  secret_hash ${T},
  removed_at  bigint NOT NULL,
  reason      ${T} NOT NULL
);
CREATE INDEX removed_subdomains_by_time ON removed_subdomains(removed_at);

CREATE TABLE acme_orders (
  id              ${T} PRIMARY KEY,
  subdomain_id    ${T} REFERENCES subdomains(id) ON DELETE CASCADE,
  purpose         ${T} NOT NULL CHECK (purpose IN ('pod', 'server')),
  names           ${T} NOT NULL,
  csr_pem         ${T} NOT NULL,
  key_sha256      ${T} NOT NULL,
  state           ${T} NOT NULL CHECK (state IN ('queued', 'working', 'valid', 'failed', 'cancelled')),
  attempts        bigint NOT NULL DEFAULT 0,
  next_attempt_at bigint NOT NULL,
  last_error      ${T},
  cert_serial     ${T},
  created_at      bigint NOT NULL,
  updated_at      bigint NOT NULL
);
CREATE INDEX acme_orders_due ON acme_orders(state, next_attempt_at);
CREATE INDEX acme_orders_by_subdomain ON acme_orders(subdomain_id);

CREATE TABLE acme_challenges (
  order_id ${T} NOT NULL REFERENCES acme_orders(id) ON DELETE CASCADE,
  owner    ${T} NOT NULL,
  value    ${T} NOT NULL,
  PRIMARY KEY (order_id, owner, value)
);

CREATE TABLE acme_failures (
  name ${T} NOT NULL,
  at   bigint NOT NULL
);
CREATE INDEX acme_failures_by_name ON acme_failures(name, at);

CREATE TABLE render_seq (
  id             bigint PRIMARY KEY CHECK (id = 1),
  seq            bigint NOT NULL,
  pruned_through bigint NOT NULL
);
INSERT INTO render_seq (id, seq, pruned_through) VALUES (1, 0, 0);

CREATE TABLE render_journal (
  name ${T} PRIMARY KEY,
  seq  bigint NOT NULL
);
CREATE INDEX render_journal_by_seq ON render_journal(seq);

CREATE TABLE metric_counters (
  name   ${T} NOT NULL,
  labels ${T} NOT NULL,
  value  double precision NOT NULL,
  PRIMARY KEY (name, labels)
);

CREATE TABLE metric_marks (
  name  ${T} PRIMARY KEY,
  value double precision NOT NULL,
  at    bigint NOT NULL
);

CREATE TABLE operators (
  name        ${T} PRIMARY KEY,
  secret_hash ${T} NOT NULL UNIQUE,
  created_at  bigint NOT NULL,
  last_used   bigint
);

-- The render journal. One bump of render_seq per row event, then each affected name at the new seq.
CREATE FUNCTION render_journal_subdomains() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
  s bigint;
BEGIN
  UPDATE render_seq SET seq = seq + 1;
  SELECT seq INTO s FROM render_seq;
  IF TG_OP = 'UPDATE' THEN
    INSERT INTO render_journal (name, seq) VALUES (OLD.name, s)
      ON CONFLICT (name) DO UPDATE SET seq = excluded.seq;
  END IF;
  INSERT INTO render_journal (name, seq) VALUES (NEW.name, s)
    ON CONFLICT (name) DO UPDATE SET seq = excluded.seq;
  RETURN NULL;
END
$fn$;

-- A subdomain's delete, BEFORE the row goes. SQLite deletes each row's cascade first (every port and the
-- key: their triggers bump the seq and find no name) and runs the subdomain's AFTER DELETE trigger last,
-- so the name gets the last of those seqs. PostgreSQL runs the cascades after the statement's rows, and
-- the children's triggers after all of them: so the children's bumps are made here, where the children
-- can still be counted, and a child's delete that finds no subdomain bumps nothing. render_seq is locked
-- (the first UPDATE) before they are counted: no other transaction's port or key trigger can run between.
CREATE FUNCTION render_journal_subdomains_delete() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
  s bigint;
BEGIN
  UPDATE render_seq SET seq = seq + 1;
  UPDATE render_seq SET seq = seq
    + (SELECT count(*) FROM ports WHERE subdomain_id = OLD.id)
    + (SELECT count(*) FROM ssh_keys WHERE subdomain_id = OLD.id);
  SELECT seq INTO s FROM render_seq;
  INSERT INTO render_journal (name, seq) VALUES (OLD.name, s)
    ON CONFLICT (name) DO UPDATE SET seq = excluded.seq;
  RETURN OLD;
END
$fn$;

-- ports and ssh_keys: the name through subdomain_id, of the old row, then of the new one (NULL: skipped).
CREATE FUNCTION render_journal_subdomain_child() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
  s bigint;
  old_name text COLLATE "C";
  new_name text COLLATE "C";
BEGIN
  IF TG_OP <> 'INSERT' THEN
    old_name := (SELECT name FROM subdomains WHERE id = OLD.subdomain_id);
  END IF;
  IF TG_OP <> 'DELETE' THEN
    new_name := (SELECT name FROM subdomains WHERE id = NEW.subdomain_id);
  END IF;
  -- The subdomain is gone: a cascaded delete, already counted by render_journal_subdomains_delete.
  IF TG_OP = 'DELETE' AND old_name IS NULL THEN
    RETURN NULL;
  END IF;
  UPDATE render_seq SET seq = seq + 1;
  SELECT seq INTO s FROM render_seq;
  IF old_name IS NOT NULL THEN
    INSERT INTO render_journal (name, seq) VALUES (old_name, s)
      ON CONFLICT (name) DO UPDATE SET seq = excluded.seq;
  END IF;
  IF new_name IS NOT NULL THEN
    INSERT INTO render_journal (name, seq) VALUES (new_name, s)
      ON CONFLICT (name) DO UPDATE SET seq = excluded.seq;
  END IF;
  RETURN NULL;
END
$fn$;

CREATE TRIGGER render_journal_subdomains_insert AFTER INSERT ON subdomains
  FOR EACH ROW EXECUTE FUNCTION render_journal_subdomains();
CREATE TRIGGER render_journal_subdomains_delete BEFORE DELETE ON subdomains
  FOR EACH ROW EXECUTE FUNCTION render_journal_subdomains_delete();
CREATE TRIGGER render_journal_subdomains_update
  AFTER UPDATE OF name, fqdn, status, passthrough, route, direct_ipv4, route6, direct_ipv6 ON subdomains
  FOR EACH ROW EXECUTE FUNCTION render_journal_subdomains();
CREATE TRIGGER render_journal_ports_insert AFTER INSERT ON ports
  FOR EACH ROW EXECUTE FUNCTION render_journal_subdomain_child();
CREATE TRIGGER render_journal_ports_delete AFTER DELETE ON ports
  FOR EACH ROW EXECUTE FUNCTION render_journal_subdomain_child();
CREATE TRIGGER render_journal_ports_update AFTER UPDATE ON ports
  FOR EACH ROW EXECUTE FUNCTION render_journal_subdomain_child();
CREATE TRIGGER render_journal_keys_insert AFTER INSERT ON ssh_keys
  FOR EACH ROW EXECUTE FUNCTION render_journal_subdomain_child();
CREATE TRIGGER render_journal_keys_delete AFTER DELETE ON ssh_keys
  FOR EACH ROW EXECUTE FUNCTION render_journal_subdomain_child();
CREATE TRIGGER render_journal_keys_update AFTER UPDATE ON ssh_keys
  FOR EACH ROW EXECUTE FUNCTION render_journal_subdomain_child();
`;
