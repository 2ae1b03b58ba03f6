// `blobd bucket create|ls|rm|set`: buckets and their settings (creating, changing and removing them is the
// admin's). `set` changes only the settings it names: the others are read first and sent back unchanged.
import { Option, type Command } from 'commander';
import { parseSize } from '../../config.ts';
import { ApiError, UsageError } from '../client.ts';
import { emit, humanSize, table, withClient } from '../output.ts';

interface BucketJson {
  name: string;
  max_object_size: number | null;
  quota_bytes: number | null;
  max_revisions: number | null;
  public_read: boolean;
  usage: { objects: number; bytes: number };
  created_at: string;
  updated_at: string;
}

interface SettingFlags {
  maxObjectSize?: string;
  quota?: string;
  maxRevisions?: string;
  publicRead?: boolean;
}

type Settings = Pick<BucketJson, 'max_object_size' | 'quota_bytes' | 'max_revisions' | 'public_read'>;

const bucketPath = (name: string) => `/api/buckets/${encodeURIComponent(name)}`;
const limit = (text: string) => (text === 'none' ? null : parseSize(text));

function withSettingFlags(cmd: Command): Command {
  return cmd
    .option('--max-object-size <size>', 'largest object (10MiB, 5GiB; none: no limit)')
    .option('--quota <size>', 'bytes all revisions may take together (none: no limit)')
    .option('--max-revisions <n>', 'revisions kept per object; older ones go (none: all)')
    .addOption(new Option('--public-read', 'anyone may read objects without a token'))
    .addOption(new Option('--no-public-read', 'reading needs a token (the default)'));
}

function applyFlags(base: Settings, f: SettingFlags): Settings {
  const next = { ...base };
  if (f.maxObjectSize !== undefined) next.max_object_size = limit(f.maxObjectSize);
  if (f.quota !== undefined) next.quota_bytes = limit(f.quota);
  if (f.maxRevisions !== undefined) {
    if (f.maxRevisions !== 'none' && !/^[1-9]\d{0,8}$/.test(f.maxRevisions)) throw new UsageError('--max-revisions is a number (or none)');
    next.max_revisions = f.maxRevisions === 'none' ? null : Number(f.maxRevisions);
  }
  if (f.publicRead !== undefined) next.public_read = f.publicRead;
  return next;
}

function describe(b: BucketJson): string {
  const cap = (n: number | null) => (n === null ? 'none' : humanSize(n));
  return table([
    ['name', b.name],
    ['objects', String(b.usage.objects)],
    ['bytes', `${b.usage.bytes} (${humanSize(b.usage.bytes)})`],
    ['max_object_size', cap(b.max_object_size)],
    ['quota', cap(b.quota_bytes)],
    ['max_revisions', b.max_revisions === null ? 'none' : String(b.max_revisions)],
    ['public_read', String(b.public_read)],
    ['created_at', b.created_at],
  ]);
}

export function registerBucket(program: Command): void {
  const bucket = program.command('bucket').description('create, list, change and remove buckets');

  withSettingFlags(bucket.command('create').description('create a bucket (error if it exists)').argument('<name>', '[a-z0-9][a-z0-9._-]{0,62}'))
    .action(async (name: string, flags: SettingFlags, cmd: Command) => {
      await withClient(cmd, async (client, g) => {
        const exists = await client.call('GET', bucketPath(name)).then(() => true, (err: unknown) => {
          if (err instanceof ApiError && err.code === 'bucket_not_found') return false;
          throw err;
        });
        if (exists) throw new ApiError(409, 'bucket_exists', `bucket ${name} exists (blobd bucket set changes its settings)`);
        const settings = applyFlags({ max_object_size: null, quota_bytes: null, max_revisions: null, public_read: false }, flags);
        const b = await client.json<BucketJson>('PUT', bucketPath(name), settings);
        emit(g, b, () => '');
      });
    });

  withSettingFlags(bucket.command('set').description('change settings of a bucket; the ones not named stay').argument('<name>', 'a bucket'))
    .action(async (name: string, flags: SettingFlags, cmd: Command) => {
      await withClient(cmd, async (client, g) => {
        const current = await client.json<BucketJson>('GET', bucketPath(name));
        const { max_object_size, quota_bytes, max_revisions, public_read } = current;
        const b = await client.json<BucketJson>('PUT', bucketPath(name), applyFlags({ max_object_size, quota_bytes, max_revisions, public_read }, flags));
        emit(g, b, () => describe(b));
      });
    });

  bucket
    .command('ls')
    .description('list the buckets your token may read (with --json: one JSON object per line)')
    .option('-l, --long', 'usage and settings too')
    .action(async (opts: { long?: boolean }, cmd: Command) => {
      await withClient(cmd, async (client, g) => {
        const rows: string[][] = [];
        for await (const b of client.list<BucketJson>('/api/buckets?limit=1000', 'buckets')) {
          if (g.json) process.stdout.write(`${JSON.stringify(b)}\n`);
          else if (opts.long) rows.push([b.name, `${b.usage.objects} objects`, humanSize(b.usage.bytes), b.public_read ? 'public_read' : 'private', b.created_at]);
          else rows.push([b.name]);
        }
        if (!g.json && rows.length > 0) process.stdout.write(`${table(rows)}\n`);
      });
    });

  bucket
    .command('rm')
    .description('delete an empty bucket (--force: with every object in it)')
    .argument('<name>', 'a bucket')
    .option('--force', 'delete its objects too')
    .action(async (name: string, opts: { force?: boolean }, cmd: Command) => {
      await withClient(cmd, async (client, g) => {
        await client.call('DELETE', `${bucketPath(name)}${opts.force ? '?force=true' : ''}`).catch((err: unknown) => {
          // The daemon's message names its query parameter; here it is an option.
          if (err instanceof ApiError && err.code === 'bucket_not_empty') {
            throw new ApiError(err.status, err.code, 'the bucket still holds objects; delete them, or pass --force to delete them with it');
          }
          throw err;
        });
        emit(g, { deleted: name }, () => '');
      });
    });

  bucket
    .command('show')
    .description('settings and usage of a bucket')
    .argument('<name>', 'a bucket')
    .action(async (name: string, _opts: unknown, cmd: Command) => {
      await withClient(cmd, async (client, g) => {
        const b = await client.json<BucketJson>('GET', bucketPath(name));
        emit(g, b, () => describe(b));
      });
    });
}
