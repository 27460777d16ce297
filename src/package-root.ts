/** Where the installed package lives: templates/ and config/ are read from here at run time. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The package names this code ships under: the whole project, and the pod package that
 * scripts/pack-pod.mjs makes (the pod CLI alone, installed with `npm install -g`).
 */
const PACKAGE_NAMES = new Set(['pipe2me', 'pipe2me-pod']);

/**
 * The nearest directory above this file with pipe2me's package.json. The code runs from src/ (tests),
 * from dist/*.mjs and from dist/chunks/ (the bundled CLIs), so no fixed number of '..' fits all.
 */
function findRoot(start: string): string {
  for (let dir = start; ; dir = path.dirname(dir)) {
    try {
      const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')) as { name?: string };
      if (pkg.name !== undefined && PACKAGE_NAMES.has(pkg.name)) return dir;
    } catch {
      /* not here */
    }
    if (path.dirname(dir) === dir) throw new Error(`pipe2me's package.json not found above ${start}`);
  }
}

export const PACKAGE_ROOT = findRoot(path.dirname(fileURLToPath(import.meta.url)));
export const TEMPLATES_DIR = path.join(PACKAGE_ROOT, 'templates');
export const CONFIG_ASSETS_DIR = path.join(PACKAGE_ROOT, 'config');
