/** Where the installed package lives: templates/ and config/ are read from here at run time. */
import { fileURLToPath } from 'node:url';
import * as path from 'node:path';

// This file compiles to dist/package-root.js, one level below the package root.
export const PACKAGE_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const TEMPLATES_DIR = path.join(PACKAGE_ROOT, 'templates');
export const CONFIG_ASSETS_DIR = path.join(PACKAGE_ROOT, 'config');
