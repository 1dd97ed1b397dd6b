import { readFile, statfs } from "node:fs/promises";
import { join } from "node:path";
import {
  type DiskStats,
  type Mount,
  type NetDev,
  type Pressure,
  type ProcStat,
  parseDiskstats,
  parseFileNr,
  parseLoadavg,
  parseMeminfo,
  parseMounts,
  parseNetDev,
  parsePressure,
  parseProcStat,
  selectMounts,
} from "./parse.ts";

export interface FilesystemStats extends Mount {
  sizeBytes: number;
  freeBytes: number;
  availBytes: number;
  files: number;
  filesFree: number;
}

export interface NetLink {
  device: string;
  up: boolean;
  /** Link speed in bytes/s; absent for virtual interfaces that do not report one. */
  speedBytes?: number;
}

/** One reading of the host. A field is undefined when its file does not exist on this kernel. */
export interface HostSnapshot {
  stat?: ProcStat;
  load?: { load1: number; load5: number; load15: number };
  meminfo?: Map<string, number>;
  pressure: { cpu?: Pressure; memory?: Pressure; io?: Pressure };
  filesystems?: FilesystemStats[];
  disks?: DiskStats[];
  net?: NetDev[];
  links?: NetLink[];
  fileNr?: { allocated: number; maximum: number };
  collectMs: number;
}

export interface HostCollectorOptions {
  procPath: string;
  sysPath: string;
  ignoredFsTypes: readonly string[];
  ignoredMountpoints: RegExp;
  ignoredDisks: RegExp;
  ignoredNetDevices: RegExp | undefined;
  /** statfs on a dead network mount can hang: give up after this long and skip it until it answers. */
  statfsTimeoutMs: number;
}

/** A file we may read; undefined when it does not exist or is unreadable (absent metric, no log spam). */
async function readOptional(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, "utf8");
  } catch {
    return undefined;
  }
}

/** Reads /proc and /sys into a HostSnapshot. Keeps only the memory of which mounts hang. */
export class HostCollector {
  readonly #o: HostCollectorOptions;
  readonly #stuck = new Set<string>();

  constructor(opts: HostCollectorOptions) {
    this.#o = opts;
  }

  async collect(): Promise<HostSnapshot> {
    const started = performance.now();
    const p = (rel: string) => join(this.#o.procPath, rel);
    const [stat, load, meminfo, psiCpu, psiMem, psiIo, mounts, diskstats, netdev, fileNr] = await Promise.all(
      [
        readOptional(p("stat")),
        readOptional(p("loadavg")),
        readOptional(p("meminfo")),
        readOptional(p("pressure/cpu")),
        readOptional(p("pressure/memory")),
        readOptional(p("pressure/io")),
        readOptional(p("self/mounts")),
        readOptional(p("diskstats")),
        readOptional(p("net/dev")),
        readOptional(p("sys/fs/file-nr")),
      ],
    );
    const net = netdev === undefined ? undefined : parseNetDev(netdev, this.#o.ignoredNetDevices);
    const [filesystems, links] = await Promise.all([
      mounts === undefined ? undefined : this.#filesystems(parseMounts(mounts)),
      net === undefined ? undefined : this.#links(net.map((n) => n.device)),
    ]);
    return {
      stat: stat === undefined ? undefined : parseProcStat(stat),
      load: load === undefined ? undefined : parseLoadavg(load),
      meminfo: meminfo === undefined ? undefined : parseMeminfo(meminfo),
      pressure: {
        cpu: psiCpu === undefined ? undefined : parsePressure(psiCpu),
        memory: psiMem === undefined ? undefined : parsePressure(psiMem),
        io: psiIo === undefined ? undefined : parsePressure(psiIo),
      },
      filesystems,
      disks: diskstats === undefined ? undefined : parseDiskstats(diskstats, this.#o.ignoredDisks),
      net,
      links,
      fileNr: fileNr === undefined ? undefined : parseFileNr(fileNr),
      collectMs: performance.now() - started,
    };
  }

  async #filesystems(all: Mount[]): Promise<FilesystemStats[]> {
    const mounts = selectMounts(all, this.#o.ignoredFsTypes, this.#o.ignoredMountpoints);
    const results = await Promise.all(
      mounts.map(async (m): Promise<FilesystemStats | undefined> => {
        if (this.#stuck.has(m.mountpoint)) return undefined;
        const pending = statfs(m.mountpoint);
        let timer: NodeJS.Timeout | undefined;
        const timeout = new Promise<"timeout">((r) => {
          timer = setTimeout(() => r("timeout"), this.#o.statfsTimeoutMs);
        });
        try {
          const s = await Promise.race([pending, timeout]);
          if (s === "timeout") {
            this.#stuck.add(m.mountpoint);
            pending.then(
              () => this.#stuck.delete(m.mountpoint),
              () => this.#stuck.delete(m.mountpoint),
            );
            return undefined;
          }
          return {
            ...m,
            sizeBytes: s.blocks * s.bsize,
            freeBytes: s.bfree * s.bsize,
            availBytes: s.bavail * s.bsize,
            files: s.files,
            filesFree: s.ffree,
          };
        } catch {
          return undefined; // permission or a mount that vanished: skip quietly
        } finally {
          clearTimeout(timer);
        }
      }),
    );
    return results.filter((r): r is FilesystemStats => r !== undefined);
  }

  async #links(devices: string[]): Promise<NetLink[]> {
    return Promise.all(
      devices.map(async (device) => {
        const dir = join(this.#o.sysPath, "class/net", device);
        const [oper, speed] = await Promise.all([
          readOptional(join(dir, "operstate")),
          readOptional(join(dir, "speed")),
        ]);
        const mbit = speed === undefined ? Number.NaN : Number(speed.trim());
        const link: NetLink = { device, up: oper?.trim() === "up" };
        // Virtual links report -1 (or fail to read): leave the speed out.
        if (Number.isFinite(mbit) && mbit > 0) link.speedBytes = (mbit * 1_000_000) / 8;
        return link;
      }),
    );
  }
}
