/**
 * The configuration's string formats, as regular expressions: the generated validator
 * (validate.generated.js) inlines them, so it needs no code of ours at run time.
 */
import { HOSTNAME_RE, LABEL_RE } from '../names/names.js';

const OCTET = '(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])';

export const FORMATS: Record<string, RegExp> = {
  ipv4: new RegExp(`^${OCTET}(\\.${OCTET}){3}$`),
  'p2m-label': LABEL_RE,
  // A host name, optionally with the trailing dot of a fully qualified name.
  'p2m-hostname': new RegExp(HOSTNAME_RE.source.replace(/\$$/, '\\.?$')),
  // A domain: a host name with at least one dot, no trailing dot.
  'p2m-domain': new RegExp(`^(?=[^.]+\\.)${HOSTNAME_RE.source.slice(1)}`),
  // An absolute, normalized path (no //, no . or .. components, no trailing /) of characters every
  // daemon's configuration format can hold unquoted.
  'p2m-abspath': /^(\/(?!\.\.?(\/|$))[A-Za-z0-9_.@+:,=-]+)+$|^\/$/,
};
