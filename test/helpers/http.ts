// Small assertions about blobd's HTTP answers, shared by the test files.
import assert from 'node:assert/strict';

/** The `error.code` of a JSON error answer (and that it is JSON at all). */
export async function errorCode(res: Response): Promise<string> {
  assert.match(res.headers.get('content-type') ?? '', /application\/json/);
  return ((await res.json()) as { error: { code: string } }).error.code;
}
