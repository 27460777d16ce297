/** The test world harness: import from here. See README.md. */
export * from './addresses.js';
export * from './topology.js';
export * from './processes.js';
export * from './runner.js';
export * from './procfs.js';
export * from './wait.js';
export * from './upnp.js';
export * from './client.js';
export * from './faults.js';
export * from './leaks.js';
export * from './registry.js';
export * from './users.js';
export * from './world.js';
