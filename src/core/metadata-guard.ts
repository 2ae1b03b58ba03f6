// The metadata store as core's services see it: a write that only adds rows is refused with 507 once free
// disk is down to --min-free, before SQLite is asked; the database's growth counts like blob bytes.
import type { BlobCommitTicket, MetadataStore } from '../storage/metadata-store.ts';
import type { DiskBudget } from './disk-budget.ts';

/**
 * Writes that add rows and that no byte budget checked first. Blob and session writes are not here: their
 * bytes were checked against the budget, and refusing their rows after the bytes were written would only
 * strand those bytes. An object write's revision is, also when announced with its bytes
 * (announceBlobCommit's ticket): an empty body passes any byte budget. Deletes are never refused: they are
 * how space comes back.
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
          : prop === 'announceBlobCommit'
            ? () => guardTicket(fn.apply(target) as BlobCommitTicket, disk)
            : fn.bind(target);
        methods.set(prop, method);
      }
      return method;
    },
  });
}

/** A ticket's addRevision is refused as addRevision is; its blob row alone is not (see ADDS_ROWS). */
function guardTicket(ticket: BlobCommitTicket, disk: DiskBudget): BlobCommitTicket {
  return {
    commit: (blob, pin) => ticket.commit(blob, pin),
    addRevision: async (input) => {
      try {
        await disk.requireRoomForRows();
      } catch (err) {
        ticket.cancel();
        throw err;
      }
      return ticket.addRevision(input);
    },
    cancel: () => ticket.cancel(),
  };
}
