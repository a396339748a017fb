#!/usr/bin/env node
// Adapter (CLI entry): the `keap-sync` command. Its commands, options and help are in harness/cli/program.ts.
import { main } from '../harness/cli/program.ts';

const code = await main(process.argv.slice(2));
if (code >= 0) process.exit(code);
