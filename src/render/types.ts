/**
 * A rendered file: content in memory, where it goes and with which mode. `unit` groups the files a
 * daemon's checker validates together; `order` says which renames go first (included files before the
 * file that includes them).
 */
export type Unit = 'sshd' | 'keys' | 'nginx' | 'dns';

export interface RenderedFile {
  unit: Unit;
  path: string;
  content: string;
  mode: number;
  order: number;
}

/** The serial placeholder in a rendered zone; the planner puts the real serial in. */
export const SERIAL_PLACEHOLDER = '@@SERIAL@@';
