// The metadata store as core's services see it: a write that only adds rows is refused with 507 once free
// disk is down to --min-free, before SQLite is asked; the database's growth counts like blob bytes.
import type { MetadataStore } from '../storage/metadata-store.ts';
import type { DiskBudget } from './disk-budget.ts';

/**
 * Writes that add rows and that no byte budget checked first. Blob and session writes are not here: their
 * bytes were checked against the budget, and refusing their rows after the bytes were written would only
 * strand those bytes — nor is the revision of an object write with bytes, announced with them
 * (announceBlobCommit's ticket). Deletes are never refused: they are how space comes back.
 */
const ADDS_ROWS: ReadonlySet<PropertyKey> = new Set([
  'createUpload',
  'putBucket',
  'addRevision',
  'setObjectMeta',
  'createToken',
] satisfies (keyof MetadataStore)[]);

export function guardRowGrowth(meta: MetadataStore, disk: DiskBudget): MetadataStore {
  // Each method once, bound to the store: the hot paths (blob commits) pay no allocation per call.
  const methods = new Map<PropertyKey, unknown>();
  return new Proxy(meta, {
    get(target, prop) {
      const value: unknown = Reflect.get(target, prop, target);
      if (typeof value !== 'function') return value;
      let method = methods.get(prop);
      if (method === undefined) {
        const fn = value as (...args: unknown[]) => unknown;
        method = ADDS_ROWS.has(prop)
          ? async (...args: unknown[]) => {
              await disk.requireRoomForRows();
              return fn.apply(target, args);
            }
          : fn.bind(target);
        methods.set(prop, method);
      }
      return method;
    },
  });
}
