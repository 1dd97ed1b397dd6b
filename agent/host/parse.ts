/**
 * Pure parsers for the /proc and /sys files the host job reads. Each takes the file's text and returns
 * plain numbers in base units (seconds, bytes), named the way node_exporter names them.
 */

/** USER_HZ: /proc/stat counts CPU time in 1/100 s on every Linux build that matters. */
export const USER_HZ = 100;
const CPU_MODES = ["user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"] as const;

export interface CpuTimes {
  cpu: string;
  mode: string;
  seconds: number;
}
export interface ProcStat {
  cpu: CpuTimes[];
  contextSwitches?: number;
  interrupts?: number;
  bootTime?: number;
  forks?: number;
  procsRunning?: number;
  procsBlocked?: number;
}

/** /proc/stat: per-CPU time by mode (guest time is already inside user/nice, as node_exporter notes). */
export function parseProcStat(text: string): ProcStat {
  const out: ProcStat = { cpu: [] };
  for (const line of text.split("\n")) {
    const f = line.trim().split(/\s+/);
    const key = f[0];
    if (!key) continue;
    if (/^cpu\d+$/.test(key)) {
      const cpu = key.slice(3);
      CPU_MODES.forEach((mode, i) => {
        const v = Number(f[i + 1]);
        if (Number.isFinite(v)) out.cpu.push({ cpu, mode, seconds: v / USER_HZ });
      });
    } else if (key === "ctxt") out.contextSwitches = Number(f[1]);
    else if (key === "intr") out.interrupts = Number(f[1]);
    else if (key === "btime") out.bootTime = Number(f[1]);
    else if (key === "processes") out.forks = Number(f[1]);
    else if (key === "procs_running") out.procsRunning = Number(f[1]);
    else if (key === "procs_blocked") out.procsBlocked = Number(f[1]);
  }
  return out;
}

export function parseLoadavg(text: string): { load1: number; load5: number; load15: number } | undefined {
  const f = text.trim().split(/\s+/).map(Number);
  if (f.length < 3 || f.slice(0, 3).some((n) => !Number.isFinite(n))) return undefined;
  return { load1: f[0]!, load5: f[1]!, load15: f[2]! };
}

/** /proc/meminfo → { MemTotal: bytes, "Active_anon": bytes, HugePages_Total: count, … } (node_exporter's field names). */
export function parseMeminfo(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    const m = /^([^:]+):\s+(\d+)(?:\s+(kB))?/.exec(line);
    if (!m) continue;
    const name = m[1]!.replace(/\((.*)\)/, "_$1").replace(/[^A-Za-z0-9_]/g, "_");
    out.set(name, Number(m[2]) * (m[3] ? 1024 : 1));
  }
  return out;
}

export interface Pressure {
  /** Seconds some task waited (all resources). */
  someSeconds: number;
  /** Seconds all non-idle tasks stalled at once (absent for cpu on older kernels). */
  fullSeconds?: number;
}
/** /proc/pressure/{cpu,memory,io}: the cumulative `total=` in microseconds. */
export function parsePressure(text: string): Pressure | undefined {
  let some: number | undefined;
  let full: number | undefined;
  for (const line of text.split("\n")) {
    const m = /^(some|full)\s.*total=(\d+)/.exec(line.trim());
    if (!m) continue;
    if (m[1] === "some") some = Number(m[2]) / 1e6;
    else full = Number(m[2]) / 1e6;
  }
  if (some === undefined) return undefined;
  return full === undefined ? { someSeconds: some } : { someSeconds: some, fullSeconds: full };
}

export interface Mount {
  device: string;
  mountpoint: string;
  fstype: string;
  readonly: boolean;
}
/** /proc/self/mounts (octal escapes like \040 for spaces decoded). */
export function parseMounts(text: string): Mount[] {
  const decode = (s: string) =>
    s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
  const out: Mount[] = [];
  for (const line of text.split("\n")) {
    const f = line.split(" ");
    if (f.length < 4) continue;
    out.push({
      device: decode(f[0]!),
      mountpoint: decode(f[1]!),
      fstype: f[2]!,
      readonly: f[3]!.split(",").includes("ro"),
    });
  }
  return out;
}

/** Pseudo and container-internal filesystems node_exporter also skips by default. */
export const DEFAULT_IGNORED_FS_TYPES = [
  "autofs",
  "binfmt_misc",
  "bpf",
  "cgroup",
  "cgroup2",
  "configfs",
  "debugfs",
  "devpts",
  "devtmpfs",
  "fusectl",
  "hugetlbfs",
  "iso9660",
  "mqueue",
  "nsfs",
  "overlay",
  "proc",
  "procfs",
  "pstore",
  "rpc_pipefs",
  "securityfs",
  "selinuxfs",
  "squashfs",
  "sysfs",
  "tracefs",
  "erofs",
  "nfsd",
  "ramfs",
];
export const DEFAULT_IGNORED_MOUNTPOINTS =
  "^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)";

/** Which mounts to report: real filesystems, one entry per mount point. */
export function selectMounts(
  mounts: Mount[],
  ignoredTypes: readonly string[],
  ignoredMountpoints: RegExp,
): Mount[] {
  const seen = new Set<string>();
  return mounts.filter((m) => {
    if (ignoredTypes.includes(m.fstype) || ignoredMountpoints.test(m.mountpoint) || seen.has(m.mountpoint))
      return false;
    seen.add(m.mountpoint);
    return true;
  });
}

export interface DiskStats {
  device: string;
  readsCompleted: number;
  readsMerged: number;
  readBytes: number;
  readTimeSeconds: number;
  writesCompleted: number;
  writesMerged: number;
  writtenBytes: number;
  writeTimeSeconds: number;
  ioNow: number;
  ioTimeSeconds: number;
  ioTimeWeightedSeconds: number;
}
/** Partitions and virtual devices node_exporter ignores by default (whole disks stay). */
export const DEFAULT_IGNORED_DEVICES = "^(z?ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\\d+n\\d+p|mmcblk\\d+p)\\d+$";

/** /proc/diskstats: sectors are always 512 bytes here, times are milliseconds. */
export function parseDiskstats(text: string, ignored: RegExp): DiskStats[] {
  const out: DiskStats[] = [];
  for (const line of text.split("\n")) {
    const f = line.trim().split(/\s+/);
    if (f.length < 14) continue;
    const device = f[2]!;
    if (ignored.test(device)) continue;
    const n = (i: number) => Number(f[i]);
    out.push({
      device,
      readsCompleted: n(3),
      readsMerged: n(4),
      readBytes: n(5) * 512,
      readTimeSeconds: n(6) / 1000,
      writesCompleted: n(7),
      writesMerged: n(8),
      writtenBytes: n(9) * 512,
      writeTimeSeconds: n(10) / 1000,
      ioNow: n(11),
      ioTimeSeconds: n(12) / 1000,
      ioTimeWeightedSeconds: n(13) / 1000,
    });
  }
  return out;
}

export interface NetDev {
  device: string;
  receiveBytes: number;
  receivePackets: number;
  receiveErrs: number;
  receiveDrop: number;
  transmitBytes: number;
  transmitPackets: number;
  transmitErrs: number;
  transmitDrop: number;
}
/** /proc/net/dev: the two header lines, then `iface: rx(8 fields) tx(8 fields)`. */
export function parseNetDev(text: string, ignored: RegExp | undefined): NetDev[] {
  const out: NetDev[] = [];
  for (const line of text.split("\n")) {
    const m = /^\s*([^:\s]+):\s*(.*)$/.exec(line);
    if (!m) continue;
    const device = m[1]!;
    if (ignored?.test(device)) continue;
    const f = m[2]!.trim().split(/\s+/).map(Number);
    if (f.length < 16) continue;
    out.push({
      device,
      receiveBytes: f[0]!,
      receivePackets: f[1]!,
      receiveErrs: f[2]!,
      receiveDrop: f[3]!,
      transmitBytes: f[8]!,
      transmitPackets: f[9]!,
      transmitErrs: f[10]!,
      transmitDrop: f[11]!,
    });
  }
  return out;
}

/** /proc/sys/fs/file-nr: allocated, unused (always 0 since 2.6), maximum. */
export function parseFileNr(text: string): { allocated: number; maximum: number } | undefined {
  const f = text.trim().split(/\s+/).map(Number);
  if (f.length < 3 || !Number.isFinite(f[0]) || !Number.isFinite(f[2])) return undefined;
  return { allocated: f[0]!, maximum: f[2]! };
}
