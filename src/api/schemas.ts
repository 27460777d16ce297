/** Request bodies of the API. Unknown fields are refused: a typo must not be silently ignored. */
export const PROTOCOL_LIST = {
  type: 'array',
  minItems: 1,
  maxItems: 64,
  items: { type: 'string', enum: ['http', 'https', 'tcp'] },
} as const;

export const createSubdomainBody = {
  type: 'object',
  additionalProperties: false,
  required: ['token', 'protocols'],
  properties: {
    token: { type: 'string', minLength: 1, maxLength: 200 },
    protocols: PROTOCOL_LIST,
    name: { type: 'string', minLength: 1, maxLength: 63 },
    passthrough: { type: 'boolean' },
  },
} as const;

export const claimBody = {
  type: 'object',
  additionalProperties: false,
  required: ['claim_token'],
  properties: { claim_token: { type: 'string', minLength: 1, maxLength: 200 } },
} as const;

export const sshKeyBody = {
  type: 'object',
  additionalProperties: false,
  required: ['public_key'],
  properties: { public_key: { type: 'string', minLength: 1, maxLength: 16384 } },
} as const;

export const csrBody = {
  type: 'object',
  additionalProperties: false,
  required: ['csr'],
  properties: { csr: { type: 'string', minLength: 1, maxLength: 16384 } },
} as const;

/**
 * What a pod says about mappings or openings it could not make: shown in status and `pipe2me-ctl show`.
 * One line of text: no control characters (they would drive the operator's terminal).
 */
const podNote = { type: 'string', maxLength: 500, pattern: '^[^\\u0000-\\u001f\\u007f-\\u009f]*$' } as const;

export const mappingsBody = {
  type: 'object',
  additionalProperties: false,
  required: ['mappings'],
  properties: {
    mappings: {
      type: 'array',
      maxItems: 70,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['external_port', 'internal_port'],
        properties: {
          external_port: { type: 'integer', minimum: 1, maximum: 65535 },
          internal_port: { type: 'integer', minimum: 1, maximum: 65535 },
          external_ip: { type: ['string', 'null'], maxLength: 45 },
          lease_seconds: { type: ['integer', 'null'], minimum: 0, maximum: 31536000 },
          // How the router mapped it; pods from before NAT-PMP support send nothing (UPnP).
          via: { enum: ['upnp', 'natpmp'] },
        },
      },
    },
    note: podNote,
  },
} as const;

/**
 * The pod's IPv6 report: its own global address (null: none, or it stopped publishing it) and the ports
 * open to it there — through a pinhole in its router's firewall, or open because nothing filters.
 */
export const ipv6Body = {
  type: 'object',
  additionalProperties: false,
  required: ['address', 'openings'],
  properties: {
    address: { type: ['string', 'null'], maxLength: 45 },
    openings: {
      type: 'array',
      maxItems: 70,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['port', 'via'],
        properties: {
          port: { type: 'integer', minimum: 1, maximum: 65535 },
          internal_port: { type: 'integer', minimum: 1, maximum: 65535 },
          via: { enum: ['pinhole', 'open'] },
          lease_seconds: { type: ['integer', 'null'], minimum: 0, maximum: 31536000 },
        },
      },
    },
    note: podNote,
  },
} as const;

export const extendBody = {
  type: 'object',
  additionalProperties: false,
  properties: {},
} as const;
