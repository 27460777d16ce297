/** Unix seconds as an ISO 8601 UTC time without milliseconds (the store keeps whole seconds): the API's and the CLI's form. */
export function isoSeconds(seconds: number): string {
  return new Date(seconds * 1000).toISOString().replace('.000Z', 'Z');
}
