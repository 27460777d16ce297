/** Where every file lives, derived from the configuration's paths. One place, so nothing guesses. */
import * as path from 'node:path';
import type { Config } from '../config/types.js';

export interface Layout {
  stateDir: string;
  stateDb: string;
  lockDir: string;
  /** What the last apply rendered, per per-pod file: its digest and the render journal's position (src/apply/render-state.ts). */
  renderManifest: string;
  publicDir: string;
  crlFile: string;
  /** Every relay's own CRL, <relay>.pem (with relays: each relay's intermediate names its own). */
  crlDir: string;
  caCertFile: string;
  certsDir: string;
  wildcardCert: string;
  wildcardKey: string;
  serverCert: string;
  serverKey: string;
  sshd: {
    dir: string; config: string; hostKey: string; pidFile: string;
    /** The key index's manifest: one line per key, "INDEXFILE AUTHORIZED_KEYS_LINE", written by apply. */
    keyList: string;
    /** The key index sshd's AuthorizedKeysCommand reads: one file per key, named by its fingerprint. */
    keysDir: string;
    keysCommand: string;
    sessionScript: string;
    /** pipe2me's nftables table (the per-source limit on the tunnel sshd's port). */
    firewall: string;
  };
  /** Session records (the session holder's, owned by the tunnel user). */
  sessionsDir: string;
  /** Connection records (the key lookup's, owned by the keys user). */
  connsDir: string;
  nginx: {
    dir: string; config: string; entryMap: string; obsolete: string[]; sniRouteMap: string; sniPortMap: string;
    prefix: string; pidFile: string; errorLog: string; accessLog: string; tmpDir: string;
    /**
     * Sockets behind which a client's address is trusted (PROXY protocol, X-Real-IP): in a directory only
     * root and nginx's workers may enter, so no other local user can connect and claim an address.
     */
    socketDir: string; httpsSocket: string; passthroughSocket: string; apiSocket: string;
  };
  /**
   * zone: what pipe2me renders (checked, compared, the record of what DNS should hold); servedZone: named's
   * own copy of it, loaded from `zone` on a whole load and kept up to date by named itself between them
   * (dynamic updates, with its journal next to it).
   */
  bind: { dir: string; config: string; zone: string; servedZone: string; rndcKey: string; workDir: string; pidFile: string };
  nsd: { dir: string; config: string; zone: string; pidFile: string; controlSocket: string; workDir: string };
}

export function layout(c: Config): Layout {
  const p = c.paths;
  const run = p.run;
  return {
    stateDir: p.state,
    stateDb: path.join(p.state, 'state.db'),
    lockDir: path.join(p.state, 'locks'),
    renderManifest: path.join(p.state, 'rendered.json'),
    publicDir: path.join(p.state, 'public'),
    crlFile: path.join(p.state, 'public', 'crl.pem'),
    crlDir: path.join(p.state, 'public', 'crl'),
    caCertFile: path.join(p.state, 'public', 'ca.pem'),
    certsDir: path.join(p.state, 'certs'),
    wildcardCert: path.join(p.state, 'certs', 'wildcard.fullchain.pem'),
    wildcardKey: path.join(p.state, 'certs', 'wildcard.key'),
    serverCert: path.join(p.state, 'certs', 'server.fullchain.pem'),
    serverKey: path.join(p.state, 'certs', 'server.key'),
    sshd: {
      dir: p.sshd,
      config: path.join(p.sshd, 'sshd_config'),
      hostKey: path.join(p.sshd, 'ssh_host_ed25519_key'),
      keyList: path.join(p.sshd, 'keys.list'),
      keysDir: path.join(p.sshd, 'keys'),
      keysCommand: path.join(p.sshd, 'pipe2me-keys'),
      firewall: path.join(p.sshd, 'pipe2me.nft'),
      sessionScript: path.join(p.sshd, 'pipe2me-session'),
      pidFile: path.join(run, 'sshd.pid'),
    },
    sessionsDir: path.join(run, 'sessions'),
    connsDir: path.join(run, 'conns'),
    nginx: {
      dir: p.nginx,
      config: path.join(p.nginx, 'nginx.conf'),
      entryMap: path.join(p.nginx, 'entry.map'),
      // Rendered by earlier releases (one map per entry), taken out once nginx serves without them.
      obsolete: [path.join(p.nginx, 'http-entry.map'), path.join(p.nginx, 'https-entry.map')],
      sniRouteMap: path.join(p.nginx, 'sni-route.map'),
      sniPortMap: path.join(p.nginx, 'sni-port.map'),
      prefix: path.join(run, 'nginx'),
      pidFile: path.join(run, 'nginx.pid'),
      errorLog: path.join(p.log, 'nginx-error.log'),
      accessLog: path.join(p.log, 'nginx-access.log'),
      tmpDir: path.join(run, 'nginx', 'tmp'),
      socketDir: path.join(run, 'nginx-sockets'),
      httpsSocket: path.join(run, 'nginx-sockets', 'https-entry.sock'),
      passthroughSocket: path.join(run, 'nginx-sockets', 'sni-passthrough.sock'),
      apiSocket: path.join(run, 'nginx-sockets', 'api.sock'),
    },
    bind: {
      dir: p.dns,
      config: path.join(p.dns, 'named.conf'),
      zone: path.join(p.dns, `${c.domain}.zone`),
      rndcKey: path.join(p.dns, 'rndc.key'),
      workDir: path.join(p.state, 'bind'),
      servedZone: path.join(p.state, 'bind', 'zone.db'),
      pidFile: path.join(run, 'named.pid'),
    },
    nsd: {
      dir: p.dns,
      config: path.join(p.dns, 'nsd.conf'),
      zone: path.join(p.dns, `${c.domain}.zone`),
      pidFile: path.join(run, 'nsd.pid'),
      controlSocket: path.join(run, 'nsd.ctl'),
      workDir: path.join(p.state, 'nsd'),
    },
  };
}
