// The one rule for text that blobd stores or queries by: it holds no U+0000 (NUL). PostgreSQL's text and
// json/jsonb cannot hold it, so the rule lives here, in core, and both metadata stores answer alike: 400.
// It checks and never rewrites: a value with a NUL is refused, not stripped.
import { BlobdError } from './errors.ts';

const NUL = '\u0000';
/** A UTF-16 surrogate without its pair: not Unicode text (stored, it would come back as U+FFFD). */
export const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
/** How deep a JSON value blobd stores may nest (SQLite's json() stops at 1000; recursion must never overflow). */
export const MAX_JSON_DEPTH = 64;

function refused(field: string): BlobdError {
  return new BlobdError('invalid_request', `${field} holds a NUL character (U+0000), which blobd does not store`, { field });
}

function notText(field: string): BlobdError {
  return new BlobdError('invalid_request', `${field} holds an unpaired UTF-16 surrogate, which is not Unicode text`, { field });
}

/** Why `text` cannot be stored, or null. */
function problem(text: string, field: string): BlobdError | null {
  if (text.includes(NUL)) return refused(field);
  if (LONE_SURROGATE.test(text)) return notText(field);
  return null;
}

/**
 * `value`, unless it holds a NUL or an unpaired surrogate: then 400 invalid_request naming `field`. Absent
 * values pass.
 */
export function refuseNul<T extends string | null | undefined>(value: T, field: string): T {
  const why = typeof value === 'string' ? problem(value, field) : null;
  if (why) throw why;
  return value;
}

interface Place {
  readonly value: unknown;
  readonly step: string;
  readonly parent: Place | null;
  readonly depth: number;
}

const pathOf = (p: Place): string => {
  const steps: string[] = [];
  for (let at: Place | null = p; at !== null; at = at.parent) steps.push(at.step);
  return steps.reverse().join('');
};

/**
 * Every string inside a JSON value — member names too — checked as `refuseNul` does; the error names the
 * path (`properties.a.b`, `tags[2]`). Walked with an explicit stack and paths built only for an error: a
 * deeply nested body must neither overflow the call stack nor cost memory by the square of its depth.
 */
export function refuseNulDeep(value: unknown, field: string): void {
  const todo: Place[] = [{ value, step: field, parent: null, depth: 0 }];
  for (let at = todo.pop(); at !== undefined; at = todo.pop()) {
    const v = at.value;
    if (typeof v === 'string') {
      const why = problem(v, pathOf(at));
      if (why) throw why;
    } else if (v !== null && typeof v === 'object') {
      // Deeper than any metadata needs, and than the stores and a merge patch's recursion take: 400, not 500.
      if (at.depth >= MAX_JSON_DEPTH) throw new BlobdError('invalid_request', `${field} nests deeper than ${MAX_JSON_DEPTH} levels`, { field });
      const depth = at.depth + 1;
      if (Array.isArray(v)) {
        for (let i = 0; i < v.length; i++) todo.push({ value: v[i], step: `[${i}]`, parent: at, depth });
      } else {
        for (const [k, item] of Object.entries(v)) {
          const why = problem(k, `a member name of ${pathOf(at)}`);
          if (why) throw why;
          todo.push({ value: item, step: `.${k}`, parent: at, depth });
        }
      }
    }
  }
}
