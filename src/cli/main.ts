#!/usr/bin/env node
// The `muse` command: one file per verb (dispatched by muse.ts).
import { runAsProcess } from './muse.js';

process.exitCode = await runAsProcess(process.argv.slice(2));
