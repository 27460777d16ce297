/**
 * What the simulated pods' ssh printed on stderr, by kind: one count per failed attempt (and, with relays,
 * per attempt the wrapper announced), for the fleet's restart and the relays' failover alike.
 */

export const CLOSED_BEFORE_AUTH = 'closed by sshd during key exchange or authentication (LoginGraceTime: this sshd exits without a log line)';

/** One stderr line by kind; `refused` says what a refused connection means in that benchmark. */
export function sshLineKind(x: string, refused: string): string {
  const relay = /^pipe2me-relay: connecting to relay (\S+)/.exec(x);
  if (relay) return `an attempt at ${relay[1]} (the wrapper)`;
  return /Connection refused/.test(x) ? refused
    : /kex_exchange_identification/.test(x) ? 'closed at the banner: sshd dropped it (MaxStartups / PerSourceMaxStartups)'
    : /^Connection closed by [\d.]+ port \d+$/.test(x) ? CLOSED_BEFORE_AUTH
    : /timed out|Timeout/.test(x) ? 'timed out'
    : /closed by remote host|Broken pipe|Connection reset/.test(x) ? 'the session was cut (the kill), or the connection broke'
    : /Permission denied/.test(x) ? 'permission denied'
    : /forwarding failed/.test(x) ? 'forward refused'
    : `other: ${x.slice(0, 60)}`;
}

/** The lines of many pods (in the order printed) counted by kind. */
export function sshSaid(lines: Iterable<{ index: number; text: string }>, refused: string): Record<string, number> {
  const said: Record<string, number> = {};
  const previous = new Map<number, string>();
  for (const { index, text } of lines) {
    const before = previous.get(index) ?? '';
    previous.set(index, text);
    // "kex_exchange_identification: …" is followed by a second line about the same connection: counted once.
    if (/^kex_exchange_identification/.test(before) && /^Connection (closed|reset) by [\d.]+ port \d+$/.test(text)) continue;
    const k = sshLineKind(text, refused);
    said[k] = (said[k] ?? 0) + 1;
  }
  return said;
}
