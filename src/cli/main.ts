#!/usr/bin/env node
console.error("modelkit-ts: the CLI is being built");
process.exitCode = 1;
