// bin/blobd runs a cached esbuild bundle of src/ (bin/launch.mjs): on a copy of the sources, a start builds
// the bundle, an unchanged tree reuses it, an edited source is never served from the old bundle, and a
// source that does not compile falls back to tsx (whose error is then shown) without recording a bundle.
import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { cp, mkdir, readdir, readFile, rename, stat, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { BLOBD_NODE_FLAGS, makeTempDir, removeDir, ROOT } from './helpers/daemon.ts';

let tree: string;

/** Runs the copy's bin/blobd; never throws (the exit code is part of the result). */
function run(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const env = { ...process.env };
    delete env.BLOBD_TSX;
    execFile(process.execPath, [...BLOBD_NODE_FLAGS, path.join(tree, 'bin', 'blobd'), ...args], { env, timeout: 120_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }),
    );
  });
}

const cache = () => path.join(tree, 'node_modules', '.cache', 'blobd');
const manifest = async () => JSON.parse(await readFile(path.join(cache(), 'manifest.json'), 'utf8')) as { entry: string; inputs: Record<string, unknown> };

describe('bin/blobd launcher', () => {
  before(async () => {
    tree = await makeTempDir('blobd-launcher-');
    for (const part of ['bin', 'src', 'tsconfig.json', 'package.json']) await cp(path.join(ROOT, part), path.join(tree, part), { recursive: true });
    // The copy's own node_modules (so its cache is its own), its packages those of the real tree.
    await mkdir(path.join(tree, 'node_modules'));
    for (const name of await readdir(path.join(ROOT, 'node_modules'))) {
      if (name !== '.cache') await symlink(path.join(ROOT, 'node_modules', name), path.join(tree, 'node_modules', name));
    }
  });
  after(() => removeDir(tree));

  it('builds a bundle on first start and reuses it while nothing changed', async () => {
    const first = await run('--version');
    assert.equal(first.code, 0, first.stderr);
    assert.equal(first.stdout.trim(), JSON.parse(await readFile(path.join(tree, 'package.json'), 'utf8')).version);
    const m = await manifest();
    assert.ok(m.inputs['src/cli/main.ts'] && m.inputs['src/server.ts'] && m.inputs['tsconfig.json'], 'every source is an input');
    await stat(path.join(cache(), m.entry));
    const built = (await stat(path.join(cache(), 'manifest.json'))).mtimeMs;
    const second = await run('--version');
    assert.equal(second.code, 0, second.stderr);
    assert.equal((await stat(path.join(cache(), 'manifest.json'))).mtimeMs, built, 'no rebuild of an unchanged tree');
  });

  it('never serves an edited source from the old bundle', async () => {
    const before = (await manifest()).entry;
    const main = path.join(tree, 'src', 'cli', 'main.ts');
    await writeFile(main, (await readFile(main, 'utf8')).replace('content-addressed blob store:', 'EDITED blob store:'));
    const help = await run('--help');
    assert.equal(help.code, 0, help.stderr);
    assert.match(help.stdout, /EDITED blob store:/);
    assert.notEqual((await manifest()).entry, before);
  });

  it('falls back to tsx when a source does not compile, and recovers once it does', async () => {
    const file = path.join(tree, 'src', 'cli', 'progress.ts');
    const good = await readFile(file, 'utf8');
    const recorded = (await manifest()).entry;
    await writeFile(file, `${good}\nexport const broken = ;\n`);
    const broken = await run('--version');
    assert.notEqual(broken.code, 0);
    assert.match(broken.stderr, /progress\.ts/);
    assert.equal((await manifest()).entry, recorded, 'a failed build records nothing');
    await writeFile(file, good);
    const fixed = await run('--version');
    assert.equal(fixed.code, 0, fixed.stderr);
  });

  it('rebuilds after the checkout moved (the bundle names its sources by absolute path)', async () => {
    const moved = `${tree}-moved`;
    await rename(tree, moved);
    // Something at the old path must not be what runs: a package.json of another version there.
    await mkdir(tree);
    await writeFile(path.join(tree, 'package.json'), JSON.stringify({ version: '9.9.9-elsewhere' }));
    const old = tree;
    tree = moved;
    try {
      const res = await run('--version');
      assert.equal(res.code, 0, res.stderr);
      assert.equal(res.stdout.trim(), JSON.parse(await readFile(path.join(moved, 'package.json'), 'utf8')).version);
    } finally {
      await removeDir(old);
      await rename(moved, old);
      tree = old;
    }
  });

  it('runs the daemon from the bundle too (files found next to their sources: migrations)', async () => {
    const data = path.join(tree, 'data');
    const child = execFile(process.execPath, [...BLOBD_NODE_FLAGS, path.join(tree, 'bin', 'blobd'), 'serve', '--port', '0', '--data', data, '--log-level', 'warn'], {
      env: { ...process.env, BLOBD_ADMIN_TOKEN: 'launcher-test-token-0123456789' },
    });
    try {
      let out = '';
      child.stdout!.on('data', (d: Buffer) => (out += d));
      const deadline = Date.now() + 60_000;
      while (!/blobd listening on (\S+)/.test(out) && Date.now() < deadline && child.exitCode === null) await new Promise((r) => setTimeout(r, 50));
      const url = /blobd listening on (\S+)/.exec(out)?.[1];
      assert.ok(url, `the daemon did not start: ${out}`);
      const res = await fetch(`${url}/readyz`);
      assert.equal(res.status, 200);
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
  });
});
