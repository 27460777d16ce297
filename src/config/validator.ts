/**
 * The JSON Schema validator for pipe2me.yml. Compiling the schema with ajv costs ~0.1 s per run, so the
 * CLIs use code generated from it once (validate.generated.js, `npm run generate`); a unit test checks
 * that the generated code is what the schema compiles to today.
 */
import { Ajv } from 'ajv';
import standaloneCode from 'ajv/dist/standalone/index.js';
import { FORMATS } from './formats.js';

export function makeAjv(forCode: boolean): Ajv {
  const ajv = new Ajv({ allErrors: true, useDefaults: true, strict: true, allowUnionTypes: true, ...(forCode ? { code: { source: true, esm: true } } : {}) });
  ajv.addKeyword('x-hint');
  // A value an error must not echo (it may hold a credential someone put there by mistake).
  ajv.addKeyword('x-secret');
  for (const [name, re] of Object.entries(FORMATS)) ajv.addFormat(name, re);
  return ajv;
}

/** The generated module's source for `schema`. */
export function generateValidatorSource(schema: object): string {
  const ajv = makeAjv(true);
  const validate = ajv.compile(schema);
  const code = (standaloneCode as unknown as { default?: typeof standaloneCode }).default ?? standaloneCode;
  return `// Generated from config/pipe2me.schema.json by \`npm run generate\`; do not edit.\n${(code as unknown as (a: Ajv, v: unknown) => string)(ajv, validate)}\n`;
}
