// The S3-API bench's report: the table of medians with the S3 front's ratios, the targets (value per
// round, target, met) and the CPU seconds per step of every process group. Measures; never fails on a ratio.

export type Cpu = Record<string, number>;

export interface Row {
  title: string;
  /** 's' (lower is better) or a rate (higher is better). */
  unit: 's' | 'ops/s';
  /** How each side did the work. */
  how: string;
  /** Per side: the value of each round (NaN when the step failed) and the CPU of each round. */
  rounds: Record<string, number[]>;
  cpu: Record<string, Cpu[]>;
  /** The operations in one step (1 for the GiB rows), to turn a rate's step back into seconds. */
  opsPerStep: number;
}

export interface Target {
  target: string;
  value: number | undefined;
  limit: number;
  op: '≤' | '≥';
  perRound?: number[];
}

export const SIDES = ['rgw', 's3api', 'native'] as const;
export const SIDE_TITLES: Record<string, string> = { rgw: 'Ceph RGW (SDK)', s3api: 'blobd S3 front (SDK)', native: 'blobd native' };
export const CPU_COLUMNS = ['client', 'blobd', 'radosgw', 'ceph-osd'] as const;

export const median = (xs: number[]) => {
  const s = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
export const f = (v: number | undefined | null, digits = 2) => (v === undefined || v === null || Number.isNaN(v) ? 'n/a' : v.toFixed(digits));
const med = (row: Row | undefined, side: string) => (row?.rounds[side] ? median(row.rounds[side]) : NaN);

/** The S3 front's value ÷ another side's: the ratio of medians and the ratio of each round's pair. */
function ratio(row: Row | undefined, other: string): { value: number | undefined; perRound?: number[] } {
  if (!row?.rounds.s3api || !row.rounds[other]) return { value: undefined };
  const value = med(row, 's3api') / med(row, other);
  return { value: Number.isNaN(value) ? undefined : value, perRound: row.rounds.s3api.map((x, i) => x / row.rounds[other]![i]!) };
}

/** The targets: ≤ 1.0× RGW's time (≥ 1.0× its rate), ≤ 1.1× native's time (rate ≥ 1/1.1). */
export function targetsOf(rows: Row[]): Target[] {
  const t: Target[] = [];
  const what = (row: Row) => (row.unit === 's' ? `${row.title} time` : row.title);
  for (const row of rows) t.push({ target: `${what(row)}, S3 front ÷ RGW`, limit: 1, op: row.unit === 's' ? '≤' : '≥', ...ratio(row, 'rgw') });
  for (const row of rows) {
    const rate = row.unit !== 's';
    t.push({ target: `${what(row)}, S3 front ÷ native${rate ? ' (time per op ≤ 1.1×)' : ''}`, limit: rate ? 0.91 : 1.1, op: rate ? '≥' : '≤', ...ratio(row, 'native') });
  }
  return t;
}

export const met = (t: Target) => (t.value === undefined ? undefined : t.op === '≤' ? t.value <= t.limit : t.value >= t.limit);

export function reportLines(rows: Row[], targets: Target[], sides: readonly string[]): string[] {
  const digits = (row: Row) => (row.unit === 's' ? 2 : 0);
  const lines = [
    `| row | ${sides.map((s) => SIDE_TITLES[s]).join(' | ')} | S3 front ÷ RGW | S3 front ÷ native |`,
    `|---|${sides.map(() => '---:|').join('')}---:|---:|`,
  ];
  for (const row of rows) {
    const cells = sides.map((s) => f(med(row, s), digits(row)));
    lines.push(`| ${row.title}, ${row.unit} (${row.how}) | ${cells.join(' | ')} | ${f(ratio(row, 'rgw').value)} | ${f(ratio(row, 'native').value)} |`);
  }
  lines.push('', '| target | value (rounds) | target | met |', '|---|---:|---:|---|');
  for (const t of targets) {
    const rounds = t.perRound ? ` (${t.perRound.map((x) => f(x)).join(', ')})` : '';
    const m = met(t);
    lines.push(`| ${t.target} | ${f(t.value)}${rounds} | ${t.op} ${t.limit} | ${m === undefined ? 'not measured' : m ? 'yes' : 'no'} |`);
  }
  lines.push('', `| CPU seconds per step (medians) | wall, s | ${CPU_COLUMNS.join(' | ')} |`, `|---|---:|${CPU_COLUMNS.map(() => '---:|').join('')}`);
  for (const row of rows) {
    for (const s of sides) {
      if (!row.cpu[s]?.length) continue;
      const wall = row.unit === 's' ? med(row, s) : row.opsPerStep / med(row, s);
      const cpu = CPU_COLUMNS.map((k) => {
        const irrelevant = (s === 'rgw' && k === 'blobd') || (s !== 'rgw' && (k === 'radosgw' || k === 'ceph-osd'));
        return irrelevant ? '' : f(median(row.cpu[s]!.map((c) => c[k] ?? 0)));
      });
      lines.push(`| ${row.title}: ${SIDE_TITLES[s]} | ${f(wall)} | ${cpu.join(' | ')} |`);
    }
  }
  return lines;
}

/** Per row and side: medians of the value and of each process group's CPU seconds (for the JSON line). */
export function rowJson(row: Row): unknown {
  return {
    unit: row.unit,
    how: row.how,
    median: Object.fromEntries(Object.entries(row.rounds).map(([s, xs]) => [s, median(xs)])),
    rounds: row.rounds,
    cpuSecondsMedian: Object.fromEntries(
      Object.entries(row.cpu).map(([s, cpus]) => [s, Object.fromEntries(CPU_COLUMNS.map((k) => [k, median(cpus.map((c) => c[k] ?? 0))]))]),
    ),
  };
}
