#!/usr/bin/env node
import { main } from '../dist/pod.mjs';
await main();
