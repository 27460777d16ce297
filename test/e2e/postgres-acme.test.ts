/**
 * acme.test.ts again, with the server's state store on PostgreSQL (a server of the test world's own, in
 * the server's namespace): the same promises on the second engine. Each test file runs in a process of
 * its own (vitest's forks pool), so the setting below holds for this file alone.
 */
process.env.PIPE2ME_TEST_STORE = 'postgres';
await import('./acme.test.js');
