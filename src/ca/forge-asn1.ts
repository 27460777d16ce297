/**
 * The part of node-forge that pipe2me uses: its ASN.1 reader and the byte buffer it reads from. Imported by
 * file, not through the package's index, so that the CLI bundle holds these ~130 KB instead of the whole
 * ~600 KB package, which every pipe2me-ctl start parsed and ran for nothing (~15 ms per command).
 */
import type forge from 'node-forge';
import asn1Lib from 'node-forge/lib/asn1.js';
import utilLib from 'node-forge/lib/util.js';

export const forgeAsn1: typeof forge.asn1 = asn1Lib;
export const forgeUtil: typeof forge.util = utilLib;
