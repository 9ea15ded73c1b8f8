#!/usr/bin/env node
// The `muse` command: one file per verb (dispatched by muse.ts).
import { main } from './muse.js';

process.exitCode = await main(process.argv.slice(2));
