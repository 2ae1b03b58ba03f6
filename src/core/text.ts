// The one rule for text that blobd stores or queries by: it holds no U+0000 (NUL). PostgreSQL's text and
// json/jsonb cannot hold it, so the rule lives here, in core, and both metadata stores answer alike: 400.
// It checks and never rewrites: a value with a NUL is refused, not stripped.
import { BlobdError } from './errors.ts';

const NUL = '\u0000';

function refused(field: string): BlobdError {
  return new BlobdError('invalid_request', `${field} holds a NUL character (U+0000), which blobd does not store`, { field });
}

/** `value`, unless it holds a NUL: then 400 invalid_request naming `field`. Absent values pass. */
export function refuseNul<T extends string | null | undefined>(value: T, field: string): T {
  if (typeof value === 'string' && value.includes(NUL)) throw refused(field);
  return value;
}

interface Place {
  readonly value: unknown;
  readonly step: string;
  readonly parent: Place | null;
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
  const todo: Place[] = [{ value, step: field, parent: null }];
  for (let at = todo.pop(); at !== undefined; at = todo.pop()) {
    const v = at.value;
    if (typeof v === 'string') {
      if (v.includes(NUL)) throw refused(pathOf(at));
    } else if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) todo.push({ value: v[i], step: `[${i}]`, parent: at });
    } else if (v !== null && typeof v === 'object') {
      for (const [k, item] of Object.entries(v)) {
        if (k.includes(NUL)) throw refused(`a member name of ${pathOf(at)}`);
        todo.push({ value: item, step: `.${k}`, parent: at });
      }
    }
  }
}
