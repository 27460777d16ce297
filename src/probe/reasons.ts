/**
 * Why a pod's route is what it is, in a few words a metric label can hold: the free-text reasons the
 * probe and the API write, sorted into a fixed, small set of classes (so that no pod can grow the label
 * set). Pure; the texts come from src/probe/run.ts, src/probe/decide.ts, src/api/server.ts and
 * src/server/route.ts.
 */
export const REASON_CLASSES = [
  'verified', 'never_probed', 'nothing_opened', 'ports_missing', 'no_address', 'not_publishable',
  'server_without_ipv6', 'not_answering_as_pod', 'recovering', 'address_moved', 'other',
] as const;
export type ReasonClass = (typeof REASON_CLASSES)[number];

const RULES: [RegExp, ReasonClass][] = [
  [/^direct|every port answers as this pod/, 'verified'],
  [/staying on the server until/, 'recovering'],
  [/now connects from|now reports|address moved|the router moved/, 'address_moved'],
  [/reported no router mappings|reported no IPv6 address|no port open at|mappings gone|no IPv6 address any more|ports closed/, 'nothing_opened'],
  [/not every port is (mapped|open)/, 'ports_missing'],
  [/has not seen the pod connect|no IPv4 address|connects over IPv6/, 'no_address'],
  [/never published|not a global unicast/, 'not_publishable'],
  [/server has no IPv6 address/, 'server_without_ipv6'],
  [/answers|no TLS answer|no http answer|no connection|greets unlike|not this pod|does not answer/, 'not_answering_as_pod'],
];

export function reasonClass(reason: string | null): ReasonClass {
  if (reason === null || reason === '') return 'never_probed';
  // "back to the server: <why>": the class is the why's.
  const why = reason.replace(/^back to the server: /, '');
  for (const [re, c] of RULES) if (re.test(why)) return c;
  return 'other';
}
