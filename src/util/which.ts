/** PATH lookup, so a missing program is reported (with its package) before anything is changed. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { MissingProgramError } from './errors.js';
import { packageFor } from './programs.js';

export function which(program: string): string | undefined {
  if (program.includes('/')) return fs.existsSync(program) ? program : undefined;
  for (const dir of (process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin').split(':')) {
    const p = path.join(dir || '.', program);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {
      /* next */
    }
  }
  return undefined;
}

export function requirePrograms(programs: readonly string[]): void {
  for (const p of programs) if (!which(p)) throw new MissingProgramError(p, packageFor(p));
}
