#!/usr/bin/env node
import { main } from '../dist/cli/pod.js';
await main();
