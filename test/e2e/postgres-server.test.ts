/**
 * server.test.ts again, with the server's state store on PostgreSQL (a server of the test world's own, in
 * the server's namespace): the same promises on the second engine. Each test file runs in a process of
 * its own (vitest's forks pool), so the settings below hold for this file alone.
 */
process.env.PIPE2ME_TEST_STORE = 'postgres';
// BIND only: the DNS daemon does not depend on the store's engine (NSD runs on SQLite in server.test.ts).
process.env.PIPE2ME_TEST_DNS = 'bind';
await import('./server.test.js');
