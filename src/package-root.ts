/** Where the installed package lives: templates/ and config/ are read from here at run time. */
import { fileURLToPath } from 'node:url';
import * as path from 'node:path';

// The CLIs are bundled into dist/*.mjs, one level below the package root; tests run the sources from
// src/, also one level below it.
export const PACKAGE_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const TEMPLATES_DIR = path.join(PACKAGE_ROOT, 'templates');
export const CONFIG_ASSETS_DIR = path.join(PACKAGE_ROOT, 'config');
