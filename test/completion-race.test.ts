// Two upload sessions completing at once into a bucket with room for only one of them: one wins (201),
// the other is refused (413 quota_exceeded) with its session open and its bytes kept — and the blob file
// the refused one had already moved into blobs/ is taken out again, not left as an orphan for GC.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { randomData } from './helpers/bytes.ts';
import { removeDir, startDaemon, type Daemon } from './helpers/daemon.ts';
import { errorCode } from './helpers/http.ts';
import { append, complete, initiate, status } from './helpers/sessions.ts';

describe('completes racing for the last room of a bucket', () => {
  let d: Daemon;
  before(async () => {
    d = await startDaemon();
  });
  after(async () => {
    await d.stop();
    await removeDir(path.dirname(d.dataDir));
  });

  test('one wins, the other stays open with its bytes, and no blob file is orphaned', async () => {
    const settings = { body: JSON.stringify({ quota_bytes: 6000 }), headers: { 'content-type': 'application/json' } };
    // A few rounds: whether the loser is refused before its bytes move or in the revision's transaction
    // after they moved depends on how the two interleave; the outcome must be the same either way.
    for (let round = 0; round < 3; round++) {
      const bucket = `q${round}`;
      assert.equal((await d.api(`/api/buckets/${bucket}`, { method: 'PUT', ...settings })).status, 201);
      const a = await initiate(d, `bucket=${bucket}&key=a`);
      const b = await initiate(d, `bucket=${bucket}&key=b`);
      assert.equal((await append(d, a, randomData(4000))).status, 203);
      assert.equal((await append(d, b, randomData(4000))).status, 203);
      const answers = await Promise.all([complete(d, a), complete(d, b)]);
      const statuses = answers.map((r) => r.status).sort();
      assert.deepEqual(statuses, [201, 413], `round ${round}`);
      const loser = answers[0]!.status === 413 ? a : b;
      assert.equal(await errorCode(answers.find((r) => r.status === 413)!), 'quota_exceeded');
      assert.deepEqual(await status(d, loser), { status: 204, offset: 4000, state: 'open' }, 'the refused session resumes');

      const fsck = await d.api('/api/admin/fsck', { method: 'POST' });
      assert.equal(fsck.status, 200);
      assert.deepEqual(((await fsck.json()) as { orphans: string[] }).orphans, [], `round ${round}: no blob file without a row`);
    }
  });
});
