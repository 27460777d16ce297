/**
 * acme-client, loaded on first use: it brings axios and its own crypto stack, ~0.1 s of module loading that
 * every pipe2me-ctl command would otherwise pay, though only the ACME worker and a server whose issuer is
 * acme ever call it.
 */
import type Acme from 'acme-client';

export type AcmeLib = typeof Acme;

let loaded: AcmeLib | undefined;

export async function acmeLib(): Promise<AcmeLib> {
  loaded ??= ((await import('acme-client')) as unknown as { default: AcmeLib }).default;
  return loaded;
}

/** The transport's https agent (the directory's trust roots), once the client has been configured. */
export function acmeAgent(): import('node:https').Agent | undefined {
  return (loaded?.axios.defaults as unknown as { httpsAgent?: import('node:https').Agent } | undefined)?.httpsAgent;
}
