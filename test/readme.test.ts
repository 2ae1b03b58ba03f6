// The documents' walk-throughs are checked, so they cannot drift from what blobd prints: each document's
// ```sh blocks run top to bottom against a fresh daemon, the way a reader pastes them in the repository
// folder next to `npm start`, and every command's output is compared with the `# ` lines under it.
// The block rules are at the top of test/helpers/walkthrough.ts.
import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, stat, symlink } from 'node:fs/promises';
import path from 'node:path';
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
