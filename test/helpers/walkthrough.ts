// Reads the shell walk-throughs of a Markdown document, runs them in one bash process and compares what
// each command printed with the output the document shows under it. The rules (also for doc writers):
//
// - Only fenced blocks opened with exactly ```sh are run; show anything that must not run as ```shell,
//   ```console or ```text. The blocks of one document run in order, as one script, in one bash process
//   (so `cd`, variables and `export` carry over from block to block).
// - In a ```sh block, a line that does not start with `#` is a command; a command line ending in `\`
//   continues on the next line.
// - `# ` lines (or a bare `#`) right after a command are its output: stdout and stderr together, as a
//   terminal shows them. A command with no `# ` lines under it must print nothing.
// - `## ` lines are prose for the reader; they end a command's output, as a blank line does. A `# ` line
//   that follows prose or a blank line is an error (it would be output of nothing).
// - `…` inside an expected line matches any text within the line (ids, times, tokens); an expected line
//   that is only `…` matches any number of lines, none included. Trailing spaces and `\r` are ignored.
// - The documents name the daemon `127.0.0.1:8887` (what `npm start` listens on); the runner puts the test
//   daemon's address in its place in commands, and back in what they print.
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';

export interface Step {
  /** 1-based line of the command's first line in the document. */
  line: number;
  command: string;
  expected: string[];
}

export interface StepResult {
  step: Step;
  actual: string[];
  status: number;
  /** How long the command took. */
  ms: number;
}

/** Every ```sh block of `markdown`, as commands with their expected output. Throws on a malformed block. */
export function parseWalkthrough(markdown: string, file: string): Step[] {
  const steps: Step[] = [];
  const lines = markdown.split('\n');
  let inRun = false;
  let inOther = false;
  let current: Step | null = null;
  let continuing = false;
  lines.forEach((raw, i) => {
    const line = raw.replace(/\s+$/, '');
    const where = `${file}:${i + 1}`;
    if (!inRun && !inOther) {
      if (/^```sh$/.test(line)) inRun = true;
      else if (/^```/.test(line)) inOther = true;
      return;
    }
    if (inOther) {
      if (/^```\s*$/.test(line)) inOther = false;
      return;
    }
    if (/^```\s*$/.test(line)) {
      if (continuing) throw new Error(`${where}: the block ends inside a continued command`);
      inRun = false;
      current = null;
      return;
    }
    if (continuing) {
      current!.command += `\n${line}`;
      continuing = line.endsWith('\\');
      return;
    }
    if (line === '' || line.startsWith('##')) {
      current = null;
      return;
    }
    if (line === '#' || line.startsWith('# ')) {
      if (!current) throw new Error(`${where}: an output line with no command above it (prose comments start with "## ")`);
      current.expected.push(line === '#' ? '' : line.slice(2));
      return;
    }
    if (line.startsWith('#')) throw new Error(`${where}: "#" starts output ("# ") or prose ("## "): ${line}`);
    current = { line: i + 1, command: line, expected: [] };
    continuing = line.endsWith('\\');
    steps.push(current);
  });
  if (inRun) throw new Error(`${file}: a \`\`\`sh block is not closed`);
  return steps;
}

export interface RunOptions {
  cwd: string;
  env: Record<string, string>;
  /** The test daemon's `host:port`, put where the document says 127.0.0.1:8887. */
  address: string;
  timeoutMs: number;
}

const DOC_ADDRESS = '127.0.0.1:8887';
const MARK = '\u001eDOCTEST';

/** Runs the steps in order in one bash process; resolves with what each printed and its exit status. */
export async function runWalkthrough(steps: Step[], opts: RunOptions): Promise<StepResult[]> {
  const script = ['exec 2>&1 </dev/null'];
  steps.forEach((s, i) => {
    script.push(s.command.split(DOC_ADDRESS).join(opts.address));
    script.push(`printf '${MARK} %d %d %d\\036' ${i} "$?" "$(date +%s%3N)"`);
  });
  const started = Date.now();
  const proc = spawn('bash', ['--noprofile', '--norc', '-c', script.join('\n')], {
    cwd: opts.cwd,
    env: opts.env,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true, // its own process group, so that a timeout ends everything it started
  });
  let out = '';
  proc.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  proc.stderr.setEncoding('utf8').on('data', (d: string) => (out += d));
  const timer = setTimeout(() => {
    try {
      process.kill(-proc.pid!, 'SIGKILL');
    } catch {
      // already gone
    }
  }, opts.timeoutMs);
  await new Promise<void>((resolve) => proc.on('close', () => resolve()));
  clearTimeout(timer);

  const results: StepResult[] = [];
  const re = new RegExp(`${MARK} (\\d+) (\\d+) (\\d+)\u001e`, 'g');
  let from = 0;
  let last = started;
  for (let m = re.exec(out); m; m = re.exec(out)) {
    const step = steps[Number(m[1])]!;
    const ms = Number(m[3]) - last;
    last = Number(m[3]);
    results.push({ step, actual: toLines(out.slice(from, m.index).split(opts.address).join(DOC_ADDRESS)), status: Number(m[2]), ms });
    from = re.lastIndex;
  }
  if (results.length < steps.length) {
    const step = steps[results.length]!;
    const tail = toLines(out.slice(from));
    results.push({ step, actual: [...tail, `(the walk-through stopped here: no answer within ${opts.timeoutMs} ms)`], status: -1, ms: Date.now() - last });
  }
  return results;
}

function toLines(text: string): string[] {
  if (text === '') return [];
  const lines = text.replace(/\n$/, '').split('\n');
  return lines.map((l) => l.replace(/\r$/, '').replace(/\s+$/, ''));
}

/** Does `actual` match `expected` under the rules above? */
export function outputMatches(expected: string[], actual: string[]): boolean {
  const patterns = expected.map((e) => (e === '…' ? null : lineRegex(e)));
  const memo = new Map<string, boolean>();
  const go = (i: number, j: number): boolean => {
    const key = `${i},${j}`;
    const known = memo.get(key);
    if (known !== undefined) return known;
    let r: boolean;
    if (i === patterns.length) r = j === actual.length;
    else if (patterns[i] === null) r = go(i + 1, j) || (j < actual.length && go(i, j + 1));
    else r = j < actual.length && patterns[i]!.test(actual[j]!) && go(i + 1, j + 1);
    memo.set(key, r);
    return r;
  };
  return go(0, 0);
}

function lineRegex(expected: string): RegExp {
  const parts = expected.replace(/\s+$/, '').split('…').map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
  return new RegExp(`^${parts.join('.*')}$`);
}

/**
 * One readable paragraph per command whose output differs from the document's, empty when all match: the
 * command, where it is, and a line diff — `-` the document's line, `+` what the command printed.
 */
export function describeMismatches(file: string, results: StepResult[]): string[] {
  return results
    .filter((r) => !outputMatches(r.step.expected, r.actual))
    .map((r) => `${file}:${r.step.line}: ${r.step.command}\n  (exit ${r.status}; - the document, + what it printed)\n${lineDiff(r.step.expected, r.actual).join('\n')}`);
}

/** A longest-common-subsequence diff of expected patterns against actual lines. */
function lineDiff(expected: string[], actual: string[]): string[] {
  const same = (e: string, a: string) => e === '…' || lineRegex(e).test(a);
  const n = expected.length;
  const m = actual.length;
  const lcs: number[][] = Array.from({ length: n + 1 }, () => new Array<number>(m + 1).fill(0));
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      lcs[i]![j] = same(expected[i]!, actual[j]!) ? lcs[i + 1]![j + 1]! + 1 : Math.max(lcs[i + 1]![j]!, lcs[i]![j + 1]!);
    }
  }
  const out: string[] = [];
  let i = 0;
  let j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && same(expected[i]!, actual[j]!)) {
      out.push(`      ${actual[j]}`);
      i++;
      j++;
    }
    else if (j < m && (i === n || lcs[i]![j + 1]! >= lcs[i + 1]![j]!)) out.push(`    + ${actual[j++]}`);
    else out.push(`    - ${expected[i++]}`);
  }
  return out.length > 0 ? out : ['    (no output expected, none printed)'];
}

export async function readWalkthrough(file: string, label: string): Promise<Step[]> {
  return parseWalkthrough(await readFile(file, 'utf8'), label);
}
