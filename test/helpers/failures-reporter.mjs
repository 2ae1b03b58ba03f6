// A node:test reporter that repeats every failed test once the run is over: its file, name and error. `npm test`
// runs it after the TAP reporter, so the end of a long run's output (the part a CI log keeps) names what failed.
// Plain JavaScript: node loads reporters before any TypeScript loader could apply.

const oneLine = (value) => String(value ?? '').trim();

function describeError(error) {
  if (error === undefined || error === null) return '(no error)';
  const parts = [];
  // A failing test's error wraps what the test threw as its cause.
  const cause = error.cause ?? error;
  if (cause.code && cause.code !== 'ERR_TEST_FAILURE') parts.push(`code: ${cause.code}`);
  parts.push(oneLine(cause.message ?? cause));
  if (cause.stack) {
    const frames = String(cause.stack).split('\n').filter((line) => /^\s+at /.test(line)).slice(0, 6);
    parts.push(...frames.map((frame) => frame.trim()));
  }
  return parts.join('\n');
}

export default async function* failures(source) {
  const failed = [];
  for await (const event of source) {
    if (event.type !== 'test:fail') continue;
    const { name, file, line, details } = event.data;
    const error = details?.error;
    // A suite or parent test fails because a subtest did; its own entry only repeats that.
    if (error?.failureType === 'subtestsFailed') continue;
    failed.push({ where: file ? `${file}${line ? `:${line}` : ''}` : '(unknown file)', name, error });
  }
  if (failed.length === 0) return;
  yield `\n# ${failed.length} failed test${failed.length === 1 ? '' : 's'}, repeated:\n`;
  for (const { where, name, error } of failed) {
    yield `# FAILED ${name}\n#   at ${where}\n`;
    // At most 60 lines of error per test, so one huge message cannot push the others out of a log's tail.
    const text = describeError(error).split('\n').slice(0, 60);
    yield text.map((l) => `#   ${l}`).join('\n') + '\n';
  }
}
