#!/usr/bin/env node
// Node ≥ 22.1 keeps the compiled code of the modules loaded below between runs; Node 20 has no such
// cache. process.getBuiltinModule (Node ≥ 20.16) gives node:module without building its ES module
// namespace, which costs more than the rest of this file.
const builtins = process as { getBuiltinModule?: (id: string) => unknown };
const nodeModule = (builtins.getBuiltinModule ? builtins.getBuiltinModule('node:module') : await import('node:module')) as { enableCompileCache?: () => unknown };
nodeModule.enableCompileCache?.();
const { main } = await import('../main.js');
process.exitCode = await main(process.argv.slice(2));
