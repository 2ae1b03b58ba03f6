// The small JSON records a data directory keeps about itself (byte-store.json: where its blobs are;
// metadata-store.json: where its rows are). One that cannot be read as blobd wrote it — cut short by a full
// disk, edited by hand — stops the start with the file's name and what to do, not a bare JSON parse error.
import { readFile } from 'node:fs/promises';

export class RecordFileError extends Error {
  override name = 'RecordFileError';
}

/**
 * The record in `file` when its `kind` is one of `kinds`; null when there is no such file. `remedy`: what
 * to do about a damaged one, in the operator's words.
 */
export async function readRecordFile<T extends { readonly kind: string }>(file: string, kinds: readonly T['kind'][], remedy: string): Promise<T | null> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    value = undefined;
  }
  const kind = (value as { kind?: unknown } | null | undefined)?.kind;
  if (typeof value !== 'object' || value === null || Array.isArray(value) || !kinds.includes(kind as T['kind'])) {
    throw new RecordFileError(
      `${file} is damaged (${text.trim() === '' ? 'empty' : `not a record with "kind" ${kinds.map((k) => `"${k}"`).join(' or ')}`}): ${remedy}`,
    );
  }
  return value as T;
}
