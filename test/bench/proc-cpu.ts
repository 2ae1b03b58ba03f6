// Where a bench step's time goes: CPU seconds of named processes (from /proc/PID/stat) and of this process
// (process.cpuUsage), taken before and after the step, and the Ceph daemons of a cluster found by its conf path.
import { readdirSync, readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import path from 'node:path';

const TICKS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

/** utime + stime of `pid` in seconds (0 once it is gone). */
export function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // fields[0] is field 3 (state)
    return (Number(fields[11]) + Number(fields[12])) / TICKS;
  } catch {
    return 0;
  }
}

/** The processes whose command line names `confFile` (the daemons of one Ceph cluster), by program name. */
export function cephDaemons(confFile: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
    } catch {
      continue; // gone meanwhile
    }
    if (argv.includes(confFile)) out[path.basename(argv[0]!)] = Number(entry);
  }
  return out;
}

/** CPU seconds used by `client` (this process) and each named pid between start() and the returned stop(). */
export function cpuMeter(pids: () => Record<string, number>): () => () => Record<string, number> {
  return () => {
    const named = pids();
    const before = Object.fromEntries(Object.entries(named).map(([n, pid]) => [n, cpuSeconds(pid)]));
    const own = process.cpuUsage();
    return () => {
      const used = process.cpuUsage(own);
      const out: Record<string, number> = { client: (used.user + used.system) / 1e6 };
      for (const [n, pid] of Object.entries(named)) out[n] = cpuSeconds(pid) - before[n]!;
      return out;
    };
  };
}
