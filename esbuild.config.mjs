// npm run build's last step, after tsc (which type-checks and writes dist/ module by module, for
// dist/scripts/) and the man page: the nocow command as a few esbuild bundles, so that start-up loads
// one file of JavaScript, not a module per source file (BENCHMARKS.md: most of what loading costs).
//
//   dist/bin/nocow.js     the entry: a few lines that import the core
//   dist/nocow-core.js    every module whose static imports are our own code, ejs and cheap Node
//                         built-ins: main, the commands, the fast path, generate's and status's layers.
//                         Minified, one file; what it imports lazily (import()) stays lazy.
//   dist/nocow-*.js       the heavy modules, those that import (statically, at any depth) a package left
//                         in node_modules (zod, execa, cli-progress…) or a costly built-in (node:crypto,
//                         node:child_process…), as the core imports them lazily: with their own copies of
//                         the light modules they use, split at their own lazy imports.
//
// Everything sits directly in dist/, where the per-module build has dist/paths.js: src/paths.ts finds
// the package's files relative to its own file, one level below the package root.
//
// A light module is in the core and may also be copied into a heavy bundle: classes are then two
// (main.ts tells usage errors by name, not instanceof), and module state is not shared. The split is
// computed from the imports each build, so a new static import of a heavy package moves the module
// importing it (and every module importing that one statically) out of the core; this step prints
// which modules are heavy, and fails if the core would import anything at start-up but cheap built-ins.
import { build } from 'esbuild';
import { readdir, readFile, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { basename, join, relative } from 'node:path';

const root = import.meta.dirname;
const dist = join(root, 'dist');
const pkg = JSON.parse(await readFile(join(root, 'package.json'), 'utf8'));
/** Bundled: small, pure, and on the generate path. The other dependencies are imported from node_modules. */
const BUNDLED = new Set(['ejs']);
const EXTERNAL = Object.keys(pkg.dependencies).filter((name) => !BUNDLED.has(name));
/** Built-ins Node has loaded before any user code, or that cost next to nothing: a static import of any other makes a module heavy. */
const CHEAP_BUILTINS = new Set(['node:fs', 'node:fs/promises', 'node:path', 'node:url', 'node:module', 'node:string_decoder', 'node:os', 'node:process']);
/** What this step writes in dist/, bar dist/bin/nocow.js: never a name tsc's per-module build uses. */
const OURS = /^nocow-(core|[\w-]+-[A-Z0-9]{8}|[A-Z0-9]{8})\.js$/;

// `import … from 'node:fs'` in an ES module makes Node read every export of fs, and four of them
// (ReadStream, WriteStream, FileReadStream, FileWriteStream) load Node's stream modules on first read:
// a few milliseconds of every start, for nothing. Bundled code gets fs from this module instead, which
// takes the CommonJS object (process.getBuiltinModule, Node ≥ 20.16; older ones import it) and exports
// its members, those four as functions that look them up when called.
const LAZY_FS = new Set(['ReadStream', 'WriteStream', 'FileReadStream', 'FileWriteStream']);
const fsNames = Object.keys(createRequire(import.meta.url)('node:fs')).filter((name) => /^[A-Za-z_$][\w$]*$/.test(name));
const fsModule = {
  name: 'fs-without-streams',
  setup(b) {
    b.onResolve({ filter: /^(node:)?fs$/ }, () => ({ path: 'node:fs', namespace: 'fs-without-streams' }));
    b.onLoad({ filter: /.*/, namespace: 'fs-without-streams' }, () => ({
      contents: [
        "const fs = globalThis.process.getBuiltinModule?.('node:fs') ?? (await import('node:fs')).default;",
        'export default fs;',
        ...fsNames.map((name) =>
          LAZY_FS.has(name) ? `export function ${name}(...args) { return new.target ? new fs.${name}(...args) : fs.${name}(...args); }` : `export const ${name} = fs.${name};`,
        ),
      ].join('\n'),
      loader: 'js',
    }));
  },
};

const common = {
  plugins: [fsModule],
  bundle: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  // Whitespace and syntax only: stack traces (--debug) keep the functions' names.
  minifyWhitespace: true,
  minifySyntax: true,
  legalComments: 'eof',
  external: EXTERNAL,
  metafile: true,
  logLevel: 'warning',
};

// 1. The import graph, to tell heavy modules from light ones.
const graph = (await build({ ...common, entryPoints: [join(root, 'src/main.ts')], outdir: join(root, 'dist'), splitting: true, write: false })).metafile;
const isBuiltin = (path) => path.startsWith('node:');
const heavy = new Set();
for (let changed = true; changed; ) {
  changed = false;
  for (const [input, { imports }] of Object.entries(graph.inputs)) {
    if (heavy.has(input)) continue;
    const costly = imports.some(
      (i) => i.kind === 'import-statement' && (heavy.has(i.path) || (i.external && (isBuiltin(i.path) ? !CHEAP_BUILTINS.has(i.path) : true))),
    );
    if (costly) {
      heavy.add(input);
      changed = true;
    }
  }
}
// The heavy modules the light ones import (all of them lazily, or the importer would be heavy too).
const boundary = new Set();
for (const [input, { imports }] of Object.entries(graph.inputs)) {
  if (heavy.has(input)) continue;
  for (const i of imports) if (heavy.has(i.path)) boundary.add(i.path);
}
console.log(`esbuild: heavy modules, bundled apart from the core: ${[...heavy].map((p) => p.replace(/^src\//, '')).sort().join(', ') || 'none'}`);

// 2. The heavy bundles: one entry per module the core imports, split where they share code.
const heavyBuild = await build({
  ...common,
  entryPoints: [...boundary].map((p) => join(root, p)),
  outdir: dist,
  entryNames: 'nocow-[name]-[hash]',
  chunkNames: 'nocow-[hash]',
  splitting: true,
});
/** Source path (relative to the root) → the file the core imports it from. */
const heavyFile = new Map();
for (const [out, o] of Object.entries(heavyBuild.metafile.outputs)) if (o.entryPoint) heavyFile.set(o.entryPoint, basename(out));

// 3. The core, importing the heavy bundles by their file names.
const toHeavy = {
  name: 'heavy-modules',
  setup(b) {
    b.onResolve({ filter: /^\.\.?\// }, async (args) => {
      if (args.pluginData?.inner) return undefined;
      const resolved = await b.resolve(args.path, { resolveDir: args.resolveDir, kind: args.kind, importer: args.importer, pluginData: { inner: true } });
      const file = heavyFile.get(relative(root, resolved.path));
      return file === undefined ? undefined : { path: `./${file}`, external: true };
    });
  },
};
const core = await build({ ...common, entryPoints: [join(root, 'src/main.ts')], outfile: join(dist, 'nocow-core.js'), plugins: [toHeavy, fsModule] });
const coreOut = core.metafile.outputs[relative(root, join(dist, 'nocow-core.js'))];
const loadedAtStart = coreOut.imports.filter((i) => i.kind === 'import-statement' && !CHEAP_BUILTINS.has(i.path)).map((i) => i.path);
if (loadedAtStart.length > 0) throw new Error(`esbuild: the core would import at start-up: ${loadedAtStart.join(', ')}`);

// 4. The entry: src/bin/nocow.ts, whose import of ../main.js is the core.
const toCore = {
  name: 'core',
  setup(b) {
    b.onResolve({ filter: /^\.\.\/main\.js$/ }, () => ({ path: '../nocow-core.js', external: true }));
  },
};
await build({ ...common, entryPoints: [join(root, 'src/bin/nocow.ts')], outfile: join(dist, 'bin/nocow.js'), plugins: [toCore, fsModule] });

// Files of an earlier build that this one did not write again.
const written = new Set([...Object.keys(heavyBuild.metafile.outputs).map((f) => basename(f)), 'nocow-core.js']);
for (const name of await readdir(dist)) {
  if (OURS.test(name) && !written.has(name)) await rm(join(dist, name));
}
