// Operations (SPEC §3.6): one GC pass now (or a dry run), fsck (optionally repairing), disk accounting, and
// a new signing key for signed URLs (`blobd keys rotate`). Admin only. Translation only: the rules live in
// core/gc, core/fsck, core/stats and core/signed-urls.
import { createRoute, z } from '@hono/zod-openapi';
import type { FsckReport, FsckService } from '../../core/fsck.ts';
import type { GcService } from '../../core/gc.ts';
import type { SignedUrls } from '../../core/signed-urls.ts';
import type { Stats } from '../../core/stats.ts';
import { requires } from '../middleware/authenticate.ts';
import { createRouter } from '../router.ts';
import { errors, jsonContent } from './schemas.ts';

const GcReportJson = z
  .object({
    blobs_removed: z.number().int(),
    bytes_freed: z.number().int(),
    sessions_expired: z.number().int(),
    pins_expired: z.number().int(),
    objects_expired: z.number().int(),
    stray_files_removed: z.number().int(),
    digests: z.array(z.string()),
    dry_run: z.boolean(),
  })
  .openapi('GcReport');

const FsckReportJson = z
  .object({
    checked: z.number().int(),
    corrupt: z.array(z.string()),
    missing: z.array(z.string()),
    orphans: z.array(z.string()),
    quarantined: z.array(z.string()),
    unreadable: z.array(z.string()).openapi({ description: 'blobs whose bytes are there but cannot be read (permissions, I/O): never quarantined' }),
  })
  .openapi('FsckReport');

const StatsJson = z
  .object({
    blobs: z.number().int(),
    stored_bytes: z.number().int(),
    logical_bytes: z.number().int(),
    dedup_ratio: z.number(),
    pins: z.number().int(),
    objects: z.number().int(),
    open_sessions: z.number().int(),
    open_session_bytes: z.number().int(),
    inline_blobs: z.number().int().openapi({ description: 'blobs whose bytes are kept inside the metadata database (--inline-max); counted in blobs too' }),
    inline_bytes: z.number().int().openapi({ description: 'their bytes; counted in stored_bytes too' }),
  })
  .openapi('Stats');

const gc = createRoute({
  method: 'post',
  path: '/api/admin/gc',
  summary: 'Run one GC pass now (dry_run=true: report what it would remove, remove nothing)',
  middleware: [requires({ action: 'admin' })] as const,
  request: { query: z.object({ dry_run: z.enum(['true', 'false']).optional() }) },
  responses: { 200: jsonContent(GcReportJson, 'what the pass removed'), ...errors(401, 403) },
});

const fsck = createRoute({
  method: 'post',
  path: '/api/admin/fsck',
  summary: 'Re-hash every blob; report corrupt, missing and orphaned files (repair=true: quarantine corrupt ones)',
  middleware: [requires({ action: 'admin' })] as const,
  request: { query: z.object({ repair: z.enum(['true', 'false']).optional() }) },
  responses: { 200: jsonContent(FsckReportJson, 'the report'), ...errors(401, 403) },
});

const stats = createRoute({
  method: 'get',
  path: '/api/admin/stats',
  summary: 'Blob count, stored and logical bytes, dedup ratio, open sessions',
  middleware: [requires({ action: 'admin' })] as const,
  responses: { 200: jsonContent(StatsJson, 'the numbers'), ...errors(401, 403) },
});

const rotateKey = createRoute({
  method: 'post',
  path: '/api/admin/keys/rotate',
  summary: 'Add a signing key for signed URLs; new URLs use it, URLs signed with older keys still verify',
  middleware: [requires({ action: 'admin' }, { signable: false })] as const,
  responses: {
    201: jsonContent(z.object({ key_id: z.string(), created_at: z.string() }).openapi('SigningKey'), 'the new key (its id; the secret stays in data/keys/)'),
    ...errors(401, 403),
  },
});

export function fsckJson(r: FsckReport) {
  return { checked: r.checked, corrupt: r.corrupt, missing: r.missing, orphans: r.orphans, quarantined: r.quarantined, unreadable: r.unreadable };
}

export function adminRoutes(services: { gc: GcService; fsck: FsckService; stats: () => Promise<Stats>; signedUrls: SignedUrls }) {
  const app = createRouter();
  app.openapi(gc, async (c) => {
    const r = await services.gc.run({ dryRun: c.req.valid('query').dry_run === 'true' });
    return c.json({
      blobs_removed: r.blobsRemoved,
      bytes_freed: r.bytesFreed,
      sessions_expired: r.sessionsExpired,
      pins_expired: r.pinsExpired,
      objects_expired: r.objectsExpired,
      stray_files_removed: r.strayFilesRemoved,
      digests: [...r.digests],
      dry_run: r.dryRun,
    }, 200);
  });
  app.openapi(fsck, async (c) => c.json(fsckJson(await services.fsck.run({ repair: c.req.valid('query').repair === 'true' })), 200));
  app.openapi(stats, async (c) => {
    const s = await services.stats();
    return c.json({
      blobs: s.blobs,
      stored_bytes: s.storedBytes,
      logical_bytes: s.logicalBytes,
      dedup_ratio: s.dedupRatio,
      pins: s.pins,
      objects: s.objects,
      open_sessions: s.openSessions,
      open_session_bytes: s.openSessionBytes,
      inline_blobs: s.inlineBlobs,
      inline_bytes: s.inlineBytes,
    }, 200);
  });
  app.openapi(rotateKey, async (c) => {
    const { kid } = await services.signedUrls.rotate();
    return c.json({ key_id: kid, created_at: new Date().toISOString() }, 201);
  });
  return app;
}
