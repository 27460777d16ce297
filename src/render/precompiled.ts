/**
 * Templates precompiled at build time (scripts/bundle.mjs replaces this module with the generated one in
 * the bundled CLIs, saving the compile on every run). Running from the sources (tests), it is empty and
 * templates are compiled when first used.
 */
const precompiled: Record<string, unknown> = {};
export default precompiled;
