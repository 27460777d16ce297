#!/usr/bin/env node
import { main } from '../dist/ctl.mjs';
await main();
