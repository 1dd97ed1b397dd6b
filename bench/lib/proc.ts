/** Process measurements from /proc for benchmarks: CPU time and memory of a process tree. */
import { readFileSync } from "node:fs";

const CLK_TCK = 100; // Linux USER_HZ

function childrenOf(pid: number): number[] {
  const out: number[] = [];
  try {
    for (const task of readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/)) {
      if (task) out.push(Number(task));
    }
  } catch {}
  return out;
}

/** The pid and all its descendants. */
export function processTree(pid: number): number[] {
  const all = [pid];
  for (let i = 0; i < all.length; i++) all.push(...childrenOf(all[i]!));
  return all;
}

/** User+system CPU seconds consumed so far by a process tree (live processes only). */
export function cpuSeconds(pid: number): number {
  let ticks = 0;
  for (const p of processTree(pid)) {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      ticks += Number(fields[11]) + Number(fields[12]); // utime, stime
    } catch {}
  }
  return ticks / CLK_TCK;
}

/** One `kB` field of /proc/<pid>/status (VmRSS, VmHWM, RssAnon, RssFile…) in bytes; 0 if absent. */
export function statusBytes(pid: number | "self", field: string): number {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** Sum of peak RSS (VmHWM) over a process tree, in bytes. */
export function peakRssBytes(pid: number): number {
  return processTree(pid).reduce((sum, p) => sum + statusBytes(p, "VmHWM"), 0);
}

/** Sum of current RSS over a process tree, in bytes. */
export function rssBytes(pid: number): number {
  return processTree(pid).reduce((sum, p) => sum + statusBytes(p, "VmRSS"), 0);
}

export function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}
