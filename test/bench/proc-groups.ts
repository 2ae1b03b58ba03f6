// CPU seconds by group of processes (every blobd node, PostgreSQL's postmaster and its backends, nginx's
// master and workers, the Ceph daemons): the pids are looked up at the start and at the end of a step, so
// backends forked meanwhile count from zero. A process that exits during the step is missed (its CPU is gone
// from /proc): the groups measured here live as long as the bench.
import { readdirSync, readFileSync } from 'node:fs';
import { cpuSeconds } from './proc-cpu.ts';

/** Pids whose parent is `ppid` (PostgreSQL's backends, nginx's workers). */
export function childrenOf(ppid: number): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const parent = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (parent === ppid) out.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** A process and its children (not grandchildren: neither postgres nor nginx has any that matter). */
export const withChildren = (pid: number | undefined): number[] => (pid ? [pid, ...childrenOf(pid)] : []);

export type Groups = () => Record<string, number[]>;

/**
 * start() → stop() → CPU seconds per group and `client` (this process) between the two. A pid seen only at
 * the end started meanwhile and counts all its CPU.
 */
export function groupMeter(groups: Groups): () => () => Record<string, number> {
  return () => {
    const before = new Map<number, number>();
    for (const pids of Object.values(groups())) for (const pid of pids) before.set(pid, cpuSeconds(pid));
    const own = process.cpuUsage();
    return () => {
      const used = process.cpuUsage(own);
      const out: Record<string, number> = { client: (used.user + used.system) / 1e6 };
      for (const [name, pids] of Object.entries(groups())) {
        out[name] = pids.reduce((sum, pid) => sum + Math.max(0, cpuSeconds(pid) - (before.get(pid) ?? 0)), 0);
      }
      return out;
    };
  };
}
