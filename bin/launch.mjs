// How bin/blobd runs the TypeScript sources without a build step: esbuild bundles src/cli/main.ts into
// node_modules/.cache/blobd once, and later starts run that plain JavaScript until any source changes.
// It must never run a bundle older than its sources: when in doubt it rebuilds, or falls back to tsx.
//
// Why: tsx's loader (a second thread that resolves and transforms every module) cost ~0.5 CPU-seconds
// per start — `blobd --version` took 0.76 CPU-s through tsx, 0.22 from the bundle — next to ~0.7 s for
// the whole of `curl -o` of 1 GiB. The manifest lists every input with its ctime and size, taken before
// esbuild reads it (an edit during a build still looks changed afterwards; unlike mtime, no tool sets a
// ctime back). Output names carry their content hash, so concurrent builds never clobber each other.
// No esbuild, an unwritable cache, or a source that does not compile (someone mid-edit): tsx, as before.
// BLOBD_TSX=1 forces tsx.
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const ENTRY = path.join(ROOT, 'src', 'cli', 'main.ts');
const CACHE = path.join(ROOT, 'node_modules', '.cache', 'blobd');
const MANIFEST = path.join(CACHE, 'manifest.json');
/** Bundles of older builds are removed after this long (a process started from one has loaded it by then). */
const KEEP_OLD_MS = 60 * 60 * 1000;

/** Runs the CLI: from a fresh bundle if there is (or can be made) one, else through tsx. */
export async function start() {
  const bundle = process.env.BLOBD_TSX === '1' ? null : (current() ?? (await rebuild().catch(() => null)));
  if (bundle) return import(pathToFileURL(bundle).href);
  const { register } = await import('tsx/esm/api');
  register();
  return import(pathToFileURL(ENTRY).href);
}

/**
 * The bundle the manifest names, if it was built for this checkout's path (the bundle holds absolute
 * file URLs, and moving a folder changes no ctime) and every input is as it was when it was built.
 */
function current() {
  let manifest;
  try {
    manifest = JSON.parse(readFileSync(MANIFEST, 'utf8'));
  } catch {
    return null;
  }
  if (manifest.root !== ROOT) return null;
  for (const [file, [ctimeMs, size]] of Object.entries(manifest.inputs)) {
    const st = statSync(path.join(ROOT, file), { throwIfNoEntry: false });
    if (!st || st.ctimeMs !== ctimeMs || st.size !== size) return null;
  }
  for (const file of manifest.outputs) if (!statSync(path.join(CACHE, file), { throwIfNoEntry: false })) return null;
  return path.join(CACHE, manifest.entry);
}

async function rebuild() {
  mkdirSync(CACHE, { recursive: true }); // an unwritable cache fails here, before a build is paid for
  const esbuild = await import('esbuild');
  const inputs = {};
  const track = async (file) => {
    const st = await stat(file);
    inputs[path.relative(ROOT, file)] = [st.ctimeMs, st.size];
  };
  try {
    await track(path.join(ROOT, 'tsconfig.json')); // its options shape the transform
    await track(fileURLToPath(import.meta.url)); // and so does this file
    const result = await esbuild.build({
      absWorkingDir: ROOT,
      entryPoints: [ENTRY],
      bundle: true,
      splitting: true, // serve's daemon and fsck/backup's offline code load only when those commands run
      format: 'esm',
      platform: 'node',
      target: 'node20',
      packages: 'external',
      outdir: CACHE,
      entryNames: '[name]-[hash]',
      chunkNames: '[name]-[hash]',
      write: false,
      // Linked source maps, read only by tools that ask: c8 (NODE_V8_COVERAGE) maps the daemon's coverage
      // back to src/, and --enable-source-maps gives stack traces in src/. A plain start never parses them.
      sourcemap: 'linked',
      metafile: true,
      logLevel: 'silent',
      plugins: [
        {
          name: 'blobd-sources',
          setup(build) {
            build.onLoad({ filter: /\.ts$/ }, async (args) => {
              await track(args.path);
              const text = await readFile(args.path, 'utf8');
              // Each module keeps its own import.meta.url: files are found next to their source
              // (src/storage/sqlite/migrations, package.json), not next to the bundle.
              return { contents: text.replaceAll('import.meta.url', JSON.stringify(pathToFileURL(args.path).href)), loader: 'ts' };
            });
          },
        },
      ],
    });
    for (const file of Object.keys(result.metafile.inputs)) if (!(path.relative(ROOT, path.resolve(ROOT, file)) in inputs)) await track(path.resolve(ROOT, file));
    const outputs = [];
    let entry = null;
    for (const out of result.outputFiles) {
      const name = path.basename(out.path);
      outputs.push(name);
      atomicWrite(out.path, out.contents);
    }
    // Dynamic imports are entry points too (splitting): the one wanted is main.ts's.
    const main = path.relative(ROOT, ENTRY).split(path.sep).join('/');
    for (const [file, meta] of Object.entries(result.metafile.outputs)) if (meta.entryPoint === main) entry = path.basename(file);
    if (!entry) throw new Error('esbuild named no entry point');
    atomicWrite(MANIFEST, JSON.stringify({ root: ROOT, entry, outputs, inputs }));
    prune(new Set([...outputs, 'manifest.json']));
    return path.join(CACHE, entry);
  } finally {
    await esbuild.stop?.(); // no esbuild service left beside a long-running daemon
  }
}

/** Readers see the whole file or none (a temp name, then rename). */
function atomicWrite(file, contents) {
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, contents);
  renameSync(tmp, file);
}

/** Best effort: files of older builds (and temp files of crashed ones) go once they are old. */
function prune(keep) {
  for (const name of readdirSync(CACHE)) {
    if (keep.has(name)) continue;
    const file = path.join(CACHE, name);
    const st = statSync(file, { throwIfNoEntry: false });
    if (st && Date.now() - st.mtimeMs > KEEP_OLD_MS) rmSync(file, { force: true });
  }
}
