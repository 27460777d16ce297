// Regenerates src/config/validate.generated.js from the configuration schema.
import * as fs from 'node:fs';
import { generateValidatorSource } from '../src/config/validator.js';

fs.writeFileSync('src/config/validate.generated.js', generateValidatorSource(JSON.parse(fs.readFileSync('config/pipe2me.schema.json', 'utf8'))));
fs.writeFileSync('src/config/validate.generated.d.ts', '// Generated with validate.generated.js; do not edit.\nimport type { ValidateFunction } from \'ajv\';\ndeclare const validate: ValidateFunction;\nexport default validate;\nexport { validate };\n');
console.log('wrote src/config/validate.generated.js');
