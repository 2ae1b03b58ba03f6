// The documents' walk-throughs are checked, so they cannot drift from what blobd prints: each document's
// ```sh blocks run top to bottom against a fresh daemon, the way a reader pastes them in the repository
// folder next to `npm start`, and every command's output is compared with the `# ` lines under it.
// The block rules are at the top of test/helpers/walkthrough.ts.
import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, stat, symlink } from 'node:fs/promises';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { after, describe, test } from 'node:test';
import { BLOBD, makeTempDir, removeDir, ROOT, startDaemon, type Daemon } from './helpers/daemon.ts';
import { describeMismatches, outputMatches, parseWalkthrough, readWalkthrough, runWalkthrough } from './helpers/walkthrough.ts';

/** Each document with the daemon flags its text says its examples ran with. */
const DOCUMENTS: { file: string; serveArgs: string[] }[] = [
  { file: 'README.md', serveArgs: [] },
  { file: 'docs/cli.md', serveArgs: [] },
  { file: 'docs/api.md', serveArgs: ['--cors-origin', 'https://app.example.com'] },
];

describe('documentation walk-throughs', { concurrency: true }, () => {
  const cleanup: (() => Promise<unknown>)[] = [];
  after(async () => {
    for (const f of cleanup.reverse()) await f();
  });

  for (const doc of DOCUMENTS) {
    test(`${doc.file}: every command prints what the document shows`, async () => {
      const steps = await readWalkthrough(path.join(ROOT, doc.file), doc.file);
      assert.ok(steps.length > 0, `${doc.file} has \`\`\`sh walk-throughs`);

      // The reader's folder: the daemon's data in ./data (so data/admin-token is where the CLI looks),
      // bin/blobd reachable as $PWD/bin/blobd, upload state in a state directory of its own.
      const work = await makeTempDir('blobd-doc-');
      cleanup.push(() => removeDir(work));
      await mkdir(path.join(work, 'bin'));
      await symlink(BLOBD, path.join(work, 'bin', 'blobd'));
      const d: Daemon = await startDaemon({ dataDir: path.join(work, 'data'), adminToken: null, args: doc.serveArgs });
      cleanup.push(() => d.stop());

      const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('BLOBD_'))) as Record<string, string>;
      Object.assign(env, {
        PATH: `${path.dirname(process.execPath)}:${env.PATH ?? '/usr/bin:/bin'}`,
        BLOBD_URL: d.url, // the documents rely on the CLI's default, http://127.0.0.1:8887
        XDG_STATE_HOME: path.join(work, 'state'),
        HOME: work,
      });
      const results = await runWalkthrough(steps, { cwd: work, env, address: new URL(d.url).host, timeoutMs: 150_000 });
      const mismatches = describeMismatches(doc.file, results);
      assert.equal(mismatches.length, 0, `${mismatches.length} command(s) printed something else than ${doc.file} shows:\n\n${mismatches.join('\n\n')}`);
    });
  }

  test('every relative link between the documents names a file that exists, and a heading in it', async () => {
    const files = ['README.md', 'CHANGELOG.md', ...(await readdir(path.join(ROOT, 'docs'))).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];
    const broken: string[] = [];
    for (const file of files) {
      const text = await readFile(path.join(ROOT, file), 'utf8');
      for (const [, target] of text.replace(/```[\s\S]*?```/g, '').matchAll(/\]\(([^)\s]+)\)/g)) {
        if (/^[a-z]+:/.test(target!)) continue; // http:, https:, mailto:
        const [ref, anchor] = target!.split('#') as [string, string | undefined];
        const linked = ref === '' ? path.join(ROOT, file) : path.resolve(path.dirname(path.join(ROOT, file)), ref);
        if (!(await stat(linked).then(() => true, () => false))) {
          broken.push(`${file}: ${target} (no such file)`);
          continue;
        }
        if (anchor !== undefined && !anchorsOf(await readFile(linked, 'utf8')).has(anchor)) broken.push(`${file}: ${target} (no such heading)`);
      }
    }
    assert.deepEqual(broken, []);
  });

  test('docs/operations.md lists every flag of blobd serve --help, and no flag it does not have', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, [BLOBD, 'serve', '--help']);
    const own = stdout.split('Global Options:')[0]!; // --url, --token, --json are the client's
    const help = new Set([...own.matchAll(/^ {2}(--[a-z0-9-]+)/gm)].map((m) => m[1]!).filter((f) => f !== '--help'));
    const table = await readFile(path.join(ROOT, 'docs/operations.md'), 'utf8');
    const documented = new Set([...table.matchAll(/^\| `(--[a-z0-9-]+)`/gm)].map((m) => m[1]!));
    assert.deepEqual([...help].filter((f) => !documented.has(f)), [], 'flags of blobd serve missing from the configuration table');
    assert.deepEqual([...documented].filter((f) => !help.has(f)), [], 'flags in the configuration table that blobd serve does not have');
  });

  test('docs/api.md names every route of /openapi.json', async () => {
    const d = await startDaemon();
    cleanup.push(() => d.stop());
    const doc = (await (await fetch(`${d.url}/openapi.json`)).json()) as { paths: Record<string, unknown> };
    // Parameters are named differently here and there ({bucket} / {b}, {ref} / {id}.{token}): compare shapes.
    const shape = (text: string) => text.replace(/\{[^}]*\}(\.\{[^}]*\})?/g, '{}');
    const api = shape(await readFile(path.join(ROOT, 'docs/api.md'), 'utf8'));
    const missing = Object.keys(doc.paths).filter((p) => !api.includes(shape(p)));
    assert.deepEqual(missing, [], 'routes that docs/api.md does not mention');
  });

  test('the runner: output lines, prose, wildcards, and a mismatch is reported with its command', () => {
    const md = ['text', '```sh', '## prose', 'echo a; \\', '  echo b', '# a', '# …', 'true', '', '```', '```shell', 'not run', '```'].join('\n');
    const steps = parseWalkthrough(md, 'x.md');
    assert.deepEqual(steps.map((s) => [s.line, s.command, s.expected]), [[4, 'echo a; \\\n  echo b', ['a', '…']], [8, 'true', []]]);
    assert.throws(() => parseWalkthrough('```sh\n\n# orphan\n```', 'x.md'), /x\.md:3: an output line with no command/);
    assert.ok(outputMatches(['id 0…9', '…', 'end'], ['id 0123456789', 'x', 'y', 'end']));
    assert.ok(outputMatches(['…'], []));
    assert.ok(!outputMatches(['a'], ['a', 'b']), 'extra output is a mismatch');
    assert.ok(!outputMatches([], ['a']), 'a command shown without output must print nothing');
    const report = describeMismatches('x.md', [{ step: steps[0]!, actual: ['z'], status: 0, ms: 1 }]);
    assert.equal(report[0], 'x.md:4: echo a; \\\n  echo b\n  (exit 0; - the document, + what it printed)\n    - a\n      z');
  });
});

/** GitHub's anchors for the headings of a Markdown text: lowercased, punctuation dropped, spaces to dashes. */
function anchorsOf(markdown: string): Set<string> {
  const anchors = new Set<string>();
  for (const [, heading] of markdown.replace(/```[\s\S]*?```/g, '').matchAll(/^#{1,6} (.+)$/gm)) {
    anchors.add(heading!.trim().toLowerCase().replace(/[^\p{L}\p{N} _-]/gu, '').replace(/ /g, '-'));
  }
  return anchors;
}
