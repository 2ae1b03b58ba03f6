// Crash soak (issue 8): a mixed, concurrent write load — one-shot uploads, upload sessions, object writes
// and deletes — killed with SIGKILL at random moments and restarted on the same data dir, again and again.
// Only what got a 2xx is recorded; what was in flight at a kill may have happened or not. Afterwards every
// acknowledged blob and object reads back with its digest, every open session resumes (G3), GC plus fsck
// find nothing wrong, and no temp file is left.
import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import path from 'node:path';
import { test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { removeDir, startDaemon, type Daemon } from './helpers/daemon.ts';
import { metaProbe } from './helpers/meta-probe.ts';
import { append, complete, status, type Session } from './helpers/sessions.ts';
import { probeStore } from './helpers/store-probe.ts';
import { waitFor } from './helpers/wait.ts';
import {
  adminPost,
  createBucket,
  deleteObject,
  expectStatus,
  type Fsck,
  KiB,
  MiB,
  pick,
  putObject,
  randomBody,
  probe,
  readBlob,
  readDigest,
  Unexpected,
  uploadBlob,
} from './helpers/workload.ts';

const ARGS = ['--gc-grace', '0s', '--gc-interval', '0s'];
const CYCLES = 6; // kill -9 and restart this many times
const WORKERS = 4;
const OPS_PER_WORKER = 60; // per cycle, an upper bound only: the kill normally comes long before
const BUCKET = 'soak';

interface BlobRecord {
  digest: string;
  how: string;
  cycle: number;
}

interface ObjectRecord {
  key: string;
  digest: string;
  cycle: number;
  /** in-flight → acknowledged (204 seen) or uncertain (the daemon died under the request). */
  deletion: 'none' | 'in-flight' | 'acknowledged' | 'uncertain';
  deletionCycle: number | null;
}

interface SessionRecord {
  s: Session;
  data: Buffer<ArrayBuffer>;
  digest: string;
  /** Offsets at which the appends end; the last one is data.length. */
  cuts: number[];
  /** A parked session stops at this offset and stays open until the end of the soak. */
  parkAt: number | null;
  /** The last acknowledged Upload-Offset (after a restart: the offset status reported). */
  acked: number;
  state: 'open' | 'completing' | 'completed' | 'lost';
  busy: boolean;
  completedCycle: number | null;
}

interface Cycle {
  n: number;
  d: Daemon;
  killing: boolean;
  acks: number;
  finishedWorkers: number;
}

test('crash soak: kill -9 under a mixed write load, six times; nothing acknowledged is lost or leaked', async (t) => {
  const blobs: BlobRecord[] = [];
  const objects: ObjectRecord[] = [];
  const sessions: SessionRecord[] = [];
  const problems: string[] = [];
  let initiatesInFlight = 0; // initiates never answered: sessions the soak does not know of
  let keySeq = 0;

  let d = await startDaemon({ args: ARGS });
  const dataDir = d.dataDir;
  // The session bytes and staging leftovers of the store (data/uploads/ and data/tmp/ on the local store).
  const store = probeStore(d);
  try {
    await createBucket(d, BUCKET);

    // --- one operation of the load, each recording only what was acknowledged ---

    async function oneShot(c: Cycle, how: 'post' | 'put') {
      const { data, digest } = randomBody();
      await uploadBlob(c.d, data, digest, how);
      blobs.push({ digest, how: `${how.toUpperCase()} /api/blobs`, cycle: c.n });
      c.acks++;
    }

    async function writeObject(c: Cycle) {
      const key = `k${++keySeq}/c${c.n}.bin`;
      const { data, digest } = randomBody();
      await putObject(c.d, BUCKET, key, data, digest);
      objects.push({ key, digest, cycle: c.n, deletion: 'none', deletionCycle: null });
      c.acks++;
    }

    async function removeObject(c: Cycle) {
      const candidates = objects.filter((o) => o.deletion === 'none');
      if (candidates.length === 0) return writeObject(c);
      const o = pick(candidates);
      o.deletion = 'in-flight';
      o.deletionCycle = c.n;
      try {
        await deleteObject(c.d, BUCKET, o.key);
        o.deletion = 'acknowledged';
        c.acks++;
      } catch (err) {
        o.deletion = 'uncertain';
        throw err;
      }
    }

    async function newSession(c: Cycle) {
      const { data, digest } = randomBody(4 * KiB, 2 * MiB);
      const pieces = 2 + randomInt(4);
      const cuts = [...new Set(Array.from({ length: pieces - 1 }, () => 1 + randomInt(data.length - 1)))].sort((a, b) => a - b);
      cuts.push(data.length);
      initiatesInFlight++;
      const res = await c.d.api(`/api/blobs/uploads?size=${data.length}`, { method: 'POST' });
      if (res.status !== 202) initiatesInFlight--;
      await expectStatus(res, [202], 'initiate');
      const body = (await res.json().catch(() => null)) as Session | null;
      if (!body) return; // the 202 arrived, its body did not: the soak cannot know this session
      initiatesInFlight--;
      const rec: SessionRecord = {
        s: { id: body.id, token: body.token },
        data,
        digest,
        cuts,
        // Every third session parks part-way and stays open to the end, so the last restart has some to resume.
        parkAt: sessions.length % 3 === 0 && cuts.length > 1 ? cuts[randomInt(cuts.length - 1)]! : null,
        acked: 0,
        state: 'open',
        busy: true,
        completedCycle: null,
      };
      sessions.push(rec);
      c.acks++;
      await advance(c, rec);
    }

    function canAdvance(r: SessionRecord): boolean {
      return r.state === 'open' && !r.busy && (r.parkAt === null || r.acked < r.parkAt);
    }

    /** One step of a session: the next append, or complete once every byte is acknowledged. */
    async function advance(c: Cycle, rec: SessionRecord) {
      rec.busy = true;
      try {
        if (rec.acked < rec.data.length) {
          const from = rec.acked;
          const to = rec.cuts.find((cut) => cut > from)!;
          const res = await append(c.d, rec.s, rec.data.subarray(from, to), { 'upload-offset': String(from) });
          await expectStatus(res, [203], `append ${rec.s.id} @${from}`);
          const offset = Number(res.headers.get('upload-offset'));
          await res.arrayBuffer().catch(() => undefined);
          if (offset !== to) throw new Unexpected(`append ${rec.s.id} ${from}..${to} answered Upload-Offset ${offset}`);
          rec.acked = to;
          c.acks++;
        } else {
          rec.state = 'completing';
          const res = await complete(c.d, rec.s, `digest=${rec.digest}`);
          await expectStatus(res, [201], `complete ${rec.s.id}`);
          rec.state = 'completed';
          rec.completedCycle = c.n;
          c.acks++;
          const body = (await res.json().catch(() => null)) as { digest?: string } | null;
          if (body && body.digest !== rec.digest) throw new Unexpected(`complete ${rec.s.id} answered ${body.digest}, expected ${rec.digest}`);
        }
      } finally {
        rec.busy = false;
      }
    }

    async function oneOperation(c: Cycle) {
      const r = Math.random();
      if (r < 0.18) return oneShot(c, 'post');
      if (r < 0.3) return oneShot(c, 'put');
      if (r < 0.55) {
        const open = sessions.filter(canAdvance);
        return open.length > 0 ? advance(c, pick(open)) : newSession(c);
      }
      if (r < 0.67) return newSession(c);
      if (r < 0.9) return writeObject(c);
      return removeObject(c);
    }

    async function worker(c: Cycle) {
      try {
        for (let i = 0; i < OPS_PER_WORKER && !c.killing; i++) {
          try {
            await oneOperation(c);
          } catch (err) {
            // A fetch that fails because the daemon was killed under it is the point of the soak; any
            // answer that is not a 2xx, or a failure while the daemon lives, is a bug.
            if (err instanceof Unexpected || !c.killing) problems.push(`cycle ${c.n}: ${(err as Error).message}`);
            if (c.killing) return;
          }
        }
      } finally {
        c.finishedWorkers++;
      }
    }

    // --- checks after a restart ---

    /** G3: every session that was open resumes at or past its acknowledged offset; a lost complete is settled. */
    async function resumeSessions(label: string, cycle: number) {
      for (const rec of sessions) {
        if (rec.state !== 'open' && rec.state !== 'completing') continue;
        const st = await status(d, rec.s);
        if (st.status !== 204) {
          problems.push(`${label}: session ${rec.s.id} (acknowledged offset ${rec.acked}, ${rec.state}) → status ${st.status}`);
          rec.state = 'lost';
          continue;
        }
        if (st.state === 'completed') {
          if (rec.state !== 'completing') problems.push(`${label}: session ${rec.s.id} says completed, but no complete was sent`);
          const res = await complete(d, rec.s, `digest=${rec.digest}`);
          const body = (await res.json()) as { digest?: string };
          if (res.status !== 201 || body.digest !== rec.digest) {
            problems.push(`${label}: repeated complete of ${rec.s.id} → ${res.status} ${JSON.stringify(body)}`);
          }
          rec.state = 'completed';
          rec.completedCycle = cycle; // its complete was in flight at this kill
          continue;
        }
        if (st.offset < rec.acked) {
          problems.push(`${label}: G3: session ${rec.s.id} resumed at ${st.offset}, below its acknowledged offset ${rec.acked}`);
        }
        if (st.offset > rec.data.length) problems.push(`${label}: session ${rec.s.id} at ${st.offset}, past its ${rec.data.length} bytes`);
        if (st.offset > 0) {
          const size = (await store.sessionKept(rec.s.id)) ?? -1;
          if (size !== st.offset) problems.push(`${label}: session ${rec.s.id} at offset ${st.offset} has ${size} bytes in uploads/`);
        }
        rec.acked = Math.min(st.offset, rec.data.length);
        rec.state = 'open';
      }
    }

    /**
     * Everything acknowledged is there: what `full` selects (by the cycle it was acknowledged in) reads back
     * with its digest, the rest answers a one-byte Range read (row and file present; fsck re-hashes them).
     */
    async function verify(label: string, full: (cycle: number) => boolean) {
      const read = async (pathname: string, whole: boolean) => {
        if (whole) return readDigest(await d.api(pathname));
        const code = await probe(d, pathname);
        return { status: code, digest: null };
      };
      const wrong = (got: { status: number; digest: string | null }, digest: string, whole: boolean) =>
        whole ? got.digest !== digest : got.status !== 206;
      for (const b of blobs) {
        const whole = full(b.cycle);
        const got = await read(`/api/blobs/${b.digest}`, whole);
        if (wrong(got, b.digest, whole)) problems.push(`${label}: ${b.how} ${b.digest} (acknowledged in cycle ${b.cycle}) → ${got.status} ${got.digest ?? ''}`);
      }
      for (const r of sessions.filter((x) => x.state === 'completed')) {
        const whole = full(r.completedCycle!);
        const got = await read(`/api/blobs/${r.digest}`, whole);
        if (wrong(got, r.digest, whole)) problems.push(`${label}: session ${r.s.id} → ${r.digest} (completed in cycle ${r.completedCycle}) → ${got.status} ${got.digest ?? ''}`);
      }
      for (const o of objects) {
        const whole = full(o.cycle) || (o.deletionCycle !== null && full(o.deletionCycle));
        const got = await read(`/api/buckets/${BUCKET}/objects/${encodeURIComponent(o.key)}`, whole);
        const what = `object ${o.key} (written in cycle ${o.cycle}, delete ${o.deletion}${o.deletionCycle === null ? '' : ` in cycle ${o.deletionCycle}`})`;
        if (o.deletion === 'acknowledged') {
          if (got.status !== 404) problems.push(`${label}: ${what} → ${got.status}, expected 404`);
        } else if (o.deletion === 'uncertain') {
          if (got.status !== 404 && wrong(got, o.digest, whole)) problems.push(`${label}: ${what} → ${got.status} ${got.digest ?? ''}`);
        } else if (wrong(got, o.digest, whole)) {
          problems.push(`${label}: ${what} → ${got.status} ${got.digest ?? ''}, expected ${o.digest}`);
        }
      }
    }

    // --- the soak ---

    for (let n = 1; n <= CYCLES; n++) {
      const c: Cycle = { n, d, killing: false, acks: 0, finishedWorkers: 0 };
      const workers = Array.from({ length: WORKERS }, () => worker(c));
      const threshold = 4 + randomInt(12);
      await waitFor(() => c.acks >= threshold || c.finishedWorkers === WORKERS, `${threshold} acknowledgements in cycle ${n}`, 30_000);
      // The kill moment is a random point in time, not a wait for a condition: a jitter within 400 ms.
      const jitter = randomInt(400);
      await delay(jitter);
      c.killing = true;
      const inFlight = sessions.filter((r) => r.busy).length;
      await d.kill9();
      await Promise.all(workers);
      t.diagnostic(`cycle ${n}: killed after ${c.acks} acknowledgements (+${jitter} ms), ${inFlight} session requests in flight`);

      d = await startDaemon({ dataDir, args: ARGS });
      const label = `after kill ${n}`;
      await resumeSessions(label, n);
      await verify(label, (cycle) => cycle === n);
    }

    // --- after the last restart ---

    const label = 'at the end';
    await verify(label, () => true);

    // Every file in uploads/ belongs to a session that is still open: ours are checked by status, the
    // ones whose initiate was never answered in the database once the daemon has stopped.
    const strangers: string[] = [];
    for (const name of await store.sessionIds()) {
      const rec = sessions.find((r) => r.s.id === name);
      if (!rec) strangers.push(name);
      else if (rec.state !== 'open') problems.push(`${label}: uploads/${name} belongs to a ${rec.state} session`);
    }

    const open = sessions.filter((r) => r.state === 'open');
    assert.ok(open.some((r) => r.acked > 0), 'the soak left at least one session with acknowledged bytes open');
    for (const rec of open) {
      const res = await append(d, rec.s, rec.data.subarray(rec.acked), { 'upload-offset': String(rec.acked) });
      const offset = res.headers.get('upload-offset');
      await res.arrayBuffer();
      if (res.status !== 203 || Number(offset) !== rec.data.length) {
        problems.push(`${label}: finishing session ${rec.s.id} from ${rec.acked} → ${res.status}, offset ${offset}`);
        continue;
      }
      const done = await complete(d, rec.s, `digest=${rec.digest}`);
      const body = (await done.json()) as { digest?: string };
      if (done.status !== 201 || body.digest !== rec.digest) {
        problems.push(`${label}: complete of resumed session ${rec.s.id} → ${done.status} ${JSON.stringify(body)}`);
        continue;
      }
      const got = await readBlob(d, rec.digest);
      if (got.digest !== rec.digest) problems.push(`${label}: resumed session ${rec.s.id} → ${got.status} ${got.digest ?? ''}`);
      rec.state = 'completed';
    }

    // GC with grace 0 clears files that a crash left without rows (and blobs of deleted objects); it must
    // not touch anything live. Then fsck finds nothing.
    const gc = await adminPost<Record<string, unknown>>(d, '/api/admin/gc');
    t.diagnostic(`gc: ${JSON.stringify({ ...gc, digests: (gc.digests as unknown[] | undefined)?.length })}`);
    await verify('after gc', () => false); // presence only: fsck re-hashes next
    const fsck = await adminPost<Fsck>(d, '/api/admin/fsck');
    if (fsck.corrupt.length + fsck.missing.length + fsck.orphans.length > 0) problems.push(`fsck after gc: ${JSON.stringify(fsck)}`);
    const digests = new Set([...blobs, ...sessions.filter((r) => r.state === 'completed')].map((x) => x.digest));
    if (fsck.checked < digests.size) problems.push(`fsck checked ${fsck.checked} blobs, ${digests.size} are pinned`);

    // No temp file remains.
    const tmp = await store.leftovers();
    if (tmp.length > 0) problems.push(`data/tmp/ is not empty: ${tmp.join(', ')}`);
    const left = await store.sessionIds();
    for (const name of left.filter((n) => !strangers.includes(n))) problems.push(`uploads/${name} outlived its session`);

    t.diagnostic(
      `acknowledged: ${blobs.length} one-shot blobs, ${objects.length} objects (${objects.filter((o) => o.deletion === 'acknowledged').length} deleted, ` +
        `${objects.filter((o) => o.deletion === 'uncertain').length} deletes in flight at a kill), ${sessions.length} sessions ` +
        `(${sessions.filter((r) => r.parkAt !== null).length} parked), ${initiatesInFlight} initiates lost, ${strangers.length} unknown session files`,
    );

    await d.stop();
    const unknown = left.filter((n) => strangers.includes(n));
    if (unknown.length > 0) {
      if (unknown.length > initiatesInFlight) problems.push(`${unknown.length} unknown session files, but only ${initiatesInFlight} initiates went unanswered`);
      const meta = metaProbe(d);
      try {
        for (const id of unknown) {
          const state = await meta.sessionState(id);
          if (state !== 'open') problems.push(`${label}: uploads/${id} has no open session (${state ?? 'no row'})`);
        }
      } finally {
        await meta.close();
      }
    }

    assert.deepEqual(problems, [], `the soak found:\n${problems.join('\n')}`);
  } finally {
    store.close();
    await d.kill9();
    await removeDir(path.dirname(dataDir));
  }
});
