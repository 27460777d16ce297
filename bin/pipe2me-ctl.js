#!/usr/bin/env node
import { main } from '../dist/cli/ctl.js';
await main();
