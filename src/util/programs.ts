/**
 * Every external program pipe2me runs, with the Debian package that provides it, so that a missing
 * program is reported as "install X" instead of a bare ENOENT.
 */
export const PROGRAMS = {
  sshd: 'openssh-server',
  ssh: 'openssh-client',
  'ssh-keygen': 'openssh-client',
  autossh: 'autossh',
  nginx: 'nginx',
  named: 'bind9',
  'named-checkconf': 'bind9-utils',
  'named-checkzone': 'bind9-utils',
  rndc: 'bind9-utils',
  'tsig-keygen': 'bind9',
  nsupdate: 'bind9-dnsutils',
  nsd: 'nsd',
  'nsd-checkconf': 'nsd',
  'nsd-checkzone': 'nsd',
  'nsd-control': 'nsd',
  openssl: 'openssl',
  upnpc: 'miniupnpc',
  useradd: 'passwd',
  userdel: 'passwd',
  usermod: 'passwd',
  ip: 'iproute2',
  systemctl: 'systemd',
  launchctl: 'launchd (macOS)',
} as const satisfies Record<string, string>;

export type ProgramName = keyof typeof PROGRAMS;

export function packageFor(program: string): string {
  const base = program.split('/').pop() ?? program;
  return (PROGRAMS as Record<string, string>)[base] ?? base;
}
