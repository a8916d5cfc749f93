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
//
// `npm run bundle -- DIR` (node esbuild.config.mjs --self-contained DIR): the same files, split the
// same way, with every npm dependency bundled, for the RPM (packaging/nocow-kit.spec), which ships no
// node_modules. The packages the light modules import lazily (yargs, yaml, execa…) become bundles of
// their own, loaded when they are with node_modules: the fast path still loads the core alone. DIR
// (empty or new) gets what follows; the command reads templates/ and package.json beside dist/, as in
// the npm package, where the RPM puts them:
//
//   DIR/dist/bin/nocow.js, DIR/dist/nocow-*.js   the command, importing nothing but Node's built-ins
//   DIR/dist/locales/yargs/*.json                 yargs's messages, which it reads at run time by path
//   DIR/bundled.txt                               "NAME VERSION LICENSE" of each npm package whose code
//                                                 is in the bundles (esbuild's metafile), checked against
//                                                 package-lock.json: the spec's bundled() Provides and
//                                                 License (LICENSE: package.json's SPDX expression)
//   DIR/bundled-licenses.txt                      their license files, one after another
import { build } from 'esbuild';
import { cp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire, isBuiltin as isNodeBuiltin } from 'node:module';
import { basename, join, relative, resolve } from 'node:path';

const root = import.meta.dirname;
const selfContained = process.argv[2] === '--self-contained' ? resolve(process.argv[3] ?? '') : undefined;
if (process.argv.length > 2 && (selfContained === undefined || process.argv.length !== 4)) {
  throw new Error('usage: node esbuild.config.mjs [--self-contained DIR]');
}
if (selfContained !== undefined && (await readdir(selfContained).catch(() => [])).length > 0) {
  throw new Error(`esbuild: ${selfContained} is not empty`);
}
const dist = join(selfContained ?? root, 'dist');
const pkg = JSON.parse(await readFile(join(root, 'package.json'), 'utf8'));
/** Bundled: small, pure, and on the generate path. The other dependencies are imported from node_modules (but by npm run bundle). */
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

// yargs finds its messages (locales/LANG.json) three directories above its own file; bundled, that
// file is dist/nocow-*.js, so the self-contained build points it at dist/locales/yargs/, where it
// copies them. Fails when a yargs update moves the line, rather than leaving help untranslated.
const YARGS_LOCALES = "directory: resolve(__dirname, '../../../locales')";
const yargsLocales = {
  name: 'yargs-locales',
  setup(b) {
    b.onLoad({ filter: /[\\/]yargs[\\/]lib[\\/]platform-shims[\\/]esm\.mjs$/ }, async (args) => {
      const text = await readFile(args.path, 'utf8');
      if (text.split(YARGS_LOCALES).length !== 2) throw new Error(`esbuild: ${args.path} no longer says ${YARGS_LOCALES}`);
      return { contents: text.replace(YARGS_LOCALES, "directory: fileURLToPath(new URL('./locales/yargs/', import.meta.url))"), loader: 'js' };
    });
  },
};
// Bundled CommonJS (cli-progress, cross-spawn…) requires Node's built-ins, which esbuild's ES module
// output can only do through a require function of its own.
const REQUIRE_BANNER = "import { createRequire as __nocowRequire } from 'node:module'; const require = __nocowRequire(import.meta.url);";

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
  // The metafile's paths are relative to it (the lookups below use paths relative to the root).
  absWorkingDir: root,
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

// Self-contained, the npm packages the light modules import (lazily) are heavy bundles too.
const lazyPackages = new Set();
if (selfContained !== undefined) {
  for (const [input, { imports }] of Object.entries(graph.inputs)) {
    if (heavy.has(input)) continue;
    for (const i of imports) if (i.external && !isBuiltin(i.path)) lazyPackages.add(i.path);
  }
}
// Each is an entry that exports what Node's import() of the package gives (its names read here, from
// that import): a CommonJS package's (yaml, cli-progress) named exports, which esbuild's own entry for
// it would leave as properties of the default export alone.
const packageEntries = {
  name: 'package-entries',
  setup(b) {
    b.onResolve({ filter: /^package-entry:/ }, (args) => ({ path: args.path.slice('package-entry:'.length), namespace: 'package-entry' }));
    b.onLoad({ filter: /.*/, namespace: 'package-entry' }, async (args) => {
      const loaded = await import(args.path);
      const names = Object.keys(loaded).filter((n) => n !== 'default' && /^[A-Za-z_$][\w$]*$/.test(n));
      const hasDefault = 'default' in loaded;
      return {
        contents: [`import * as m from ${JSON.stringify(args.path)};`, ...(names.length > 0 ? [`export const { ${names.join(', ')} } = m;`] : []), ...(hasDefault ? ['export default m.default;'] : [])].join('\n'),
        resolveDir: root,
        loader: 'js',
      };
    });
  },
};
// preserveSymlinks: the paths esbuild writes into the bundles (CommonJS modules' names) are
// node_modules/…, wherever a node_modules symlink of the checkout points.
const bundledAlone = selfContained === undefined ? {} : { plugins: [packageEntries, fsModule, yargsLocales], external: [], preserveSymlinks: true, banner: { js: REQUIRE_BANNER } };

// 2. The heavy bundles: one entry per module the core imports, split where they share code.
const heavyBuild = await build({
  ...common,
  ...bundledAlone,
  entryPoints: [...[...boundary].map((p) => join(root, p)), ...[...lazyPackages].map((name) => ({ in: `package-entry:${name}`, out: name.replace(/^@/, '').replaceAll('/', '-') }))],
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
    // Self-contained, also the packages the core imports (lazily), which are heavy bundles then.
    b.onResolve({ filter: /.*/ }, (args) => {
      const file = lazyPackages.has(args.path) ? heavyFile.get(`package-entry:${args.path}`) : undefined;
      return file === undefined ? undefined : { path: `./${file}`, external: true };
    });
    b.onResolve({ filter: /^\.\.?\// }, async (args) => {
      if (args.pluginData?.inner) return undefined;
      const resolved = await b.resolve(args.path, { resolveDir: args.resolveDir, kind: args.kind, importer: args.importer, pluginData: { inner: true } });
      if (resolved.errors.length > 0) return undefined;
      const file = heavyFile.get(relative(root, resolved.path));
      return file === undefined ? undefined : { path: `./${file}`, external: true };
    });
  },
};
const ownExternal = selfContained === undefined ? {} : { external: [], preserveSymlinks: true };
const core = await build({ ...common, ...ownExternal, entryPoints: [join(root, 'src/main.ts')], outfile: join(dist, 'nocow-core.js'), plugins: [toHeavy, fsModule] });
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
const entry = await build({ ...common, ...ownExternal, entryPoints: [join(root, 'src/bin/nocow.ts')], outfile: join(dist, 'bin/nocow.js'), plugins: [toCore, fsModule] });

if (selfContained === undefined) {
  // Files of an earlier build that this one did not write again.
  const written = new Set([...Object.keys(heavyBuild.metafile.outputs).map((f) => basename(f)), 'nocow-core.js']);
  for (const name of await readdir(dist)) {
    if (OURS.test(name) && !written.has(name)) await rm(join(dist, name));
  }
} else {
  await writeBundledPackages(selfContained, [heavyBuild.metafile, core.metafile, entry.metafile]);
}

/** DIR/bundled.txt, DIR/bundled-licenses.txt and yargs's locales, from what the bundles hold; and a check that they import no npm package. */
async function writeBundledPackages(dir, metafiles) {
  for (const m of metafiles) {
    for (const [out, { imports }] of Object.entries(m.outputs)) {
      const left = imports.filter((i) => i.external && !isNodeBuiltin(i.path) && !/^\.\.?\//.test(i.path)).map((i) => i.path);
      if (left.length > 0) throw new Error(`esbuild: ${out} still imports ${left.join(', ')}`);
    }
  }
  const lock = JSON.parse(await readFile(join(root, 'package-lock.json'), 'utf8'));
  const nodeModules = join(root, 'node_modules');
  /** package-lock.json's key of each package directory whose files are bundled (node_modules/a/node_modules/b). */
  const keys = new Set();
  for (const m of metafiles) {
    for (const input of Object.keys(m.inputs)) {
      const path = resolve(root, input);
      if (!path.startsWith(`${nodeModules}/`)) continue;
      const key = /^node_modules\/(?:@[^/]+\/)?[^/]+(?:\/node_modules\/(?:@[^/]+\/)?[^/]+)*/.exec(`node_modules/${path.slice(nodeModules.length + 1)}`)[0];
      keys.add(key);
    }
  }
  // One text of all the license files: the same few licenses, many times over, as one file per
  // package would be rpmlint's files-duplicate.
  const lines = new Set();
  const texts = [];
  for (const key of [...keys].sort()) {
    const { name, version, license } = JSON.parse(await readFile(join(root, key, 'package.json'), 'utf8'));
    const pinned = lock.packages?.[key]?.version;
    if (pinned !== version) throw new Error(`esbuild: ${key} is ${name} ${version}, package-lock.json pins ${pinned ?? 'nothing there'}: run npm ci`);
    if (typeof license !== 'string' || !/^[\w.+-]+( (AND|OR|WITH) [\w.+-]+)*$|^\([\w.+ -]+\)$/.test(license)) {
      throw new Error(`esbuild: ${key}: package.json's license ${JSON.stringify(license)} is not an SPDX expression the spec's License can take`);
    }
    if ([...lines].some((l) => l.startsWith(`${name} ${version} `))) continue;
    lines.add(`${name} ${version} ${license}`);
    const files = (await readdir(join(root, key))).filter((f) => /^(licen[cs]e|copying|notice)([.-][\w.-]+)?$/i.test(f)).sort();
    if (files.length === 0) texts.push(`==> ${name} ${version}: no license file; its package.json says ${license} <==\n`);
    for (const file of files) texts.push(`==> ${name} ${version}, ${key}/${file} (package.json: ${license}) <==\n${(await readFile(join(root, key, file), 'utf8')).trimEnd()}\n`);
  }
  await writeFile(
    join(dir, 'bundled-licenses.txt'),
    `The license files of the npm packages bundled in nocow-kit's command (dist/nocow-*.js), each as its\npackage has it; bundled.txt, the bundled(nodejs-NAME) Provides, lists the same packages.\n\n${texts.join('\n')}`,
  );
  await writeFile(join(dir, 'bundled.txt'), [...lines].sort().map((l) => `${l}\n`).join(''));
  if (keys.has('node_modules/yargs')) await cp(join(root, 'node_modules/yargs/locales'), join(dist, 'locales/yargs'), { recursive: true, preserveTimestamps: true });
  console.log(`esbuild: self-contained in ${dir}: ${lines.size} npm packages bundled (bundled.txt)`);
}
