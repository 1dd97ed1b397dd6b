import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import t from "tap";
import { HostCollector } from "../../agent/host/collect.ts";
import { hostMetrics } from "../../agent/host/metrics.ts";
import {
  DEFAULT_IGNORED_DEVICES,
  DEFAULT_IGNORED_FS_TYPES,
  DEFAULT_IGNORED_MOUNTPOINTS,
  parseDiskstats,
  parseFileNr,
  parseLoadavg,
  parseMeminfo,
  parseMounts,
  parseNetDev,
  parsePressure,
  parseProcStat,
  selectMounts,
} from "../../agent/host/parse.ts";

const STAT = `cpu  100 2 300 4000 50 6 7 8 0 0
cpu0 50 1 150 2000 25 3 4 4 0 0
cpu1 50 1 150 2000 25 3 3 4 0 0
intr 12345 0 0
ctxt 98765
btime 1700000000
processes 4242
procs_running 3
procs_blocked 1
`;

t.test("/proc/stat: per-CPU seconds by mode and the kernel counters", async (t) => {
  const s = parseProcStat(STAT);
  t.equal(s.cpu.length, 16, "2 CPUs x 8 modes, the aggregate line skipped");
  t.same(
    s.cpu.find((c) => c.cpu === "0" && c.mode === "idle"),
    { cpu: "0", mode: "idle", seconds: 20 },
  );
  t.same(
    s.cpu.find((c) => c.cpu === "1" && c.mode === "steal"),
    { cpu: "1", mode: "steal", seconds: 0.04 },
  );
  t.equal(s.contextSwitches, 98765);
  t.equal(s.interrupts, 12345);
  t.equal(s.bootTime, 1700000000);
  t.equal(s.forks, 4242);
  t.equal(s.procsRunning, 3);
  t.equal(s.procsBlocked, 1);
});

t.test("loadavg, meminfo, file-nr", async (t) => {
  t.same(parseLoadavg("0.52 0.41 0.30 2/345 6789\n"), { load1: 0.52, load5: 0.41, load15: 0.3 });
  t.equal(parseLoadavg("garbage"), undefined);
  const mem = parseMeminfo(
    "MemTotal:       16384 kB\nActive(anon):    1024 kB\nHugePages_Total:       4\nSwapFree: 0 kB\n",
  );
  t.equal(mem.get("MemTotal"), 16384 * 1024);
  t.equal(mem.get("Active_anon"), 1024 * 1024, "parentheses become _ like node_exporter");
  t.equal(mem.get("HugePages_Total"), 4, "unitless counts stay counts");
  t.equal(mem.get("SwapFree"), 0);
  t.same(parseFileNr("1952\t0\t9223372036854775807\n"), { allocated: 1952, maximum: 2 ** 63 });
});

t.test("pressure: some and full totals in seconds; missing full line", async (t) => {
  t.same(
    parsePressure(
      "some avg10=0.00 avg60=0.00 avg300=0.00 total=1500000\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=250000\n",
    ),
    { someSeconds: 1.5, fullSeconds: 0.25 },
  );
  t.same(parsePressure("some avg10=1.00 avg60=0.50 avg300=0.10 total=42\n"), { someSeconds: 0.000042 });
  t.equal(parsePressure(""), undefined);
});

t.test("mounts: escapes decoded, pseudo filesystems and duplicates skipped", async (t) => {
  const mounts = parseMounts(
    [
      "/dev/sda1 / ext4 rw,relatime 0 0",
      "proc /proc proc rw 0 0",
      "tmpfs /run tmpfs rw 0 0",
      "/dev/sdb1 /mnt/my\\040disk xfs ro,noatime 0 0",
      "/dev/sda1 / ext4 rw 0 0",
      "overlay /var/lib/docker/overlay2/x/merged overlay rw 0 0",
      "sysfs /sys sysfs rw 0 0",
    ].join("\n"),
  );
  t.equal(mounts[3]?.mountpoint, "/mnt/my disk");
  t.equal(mounts[3]?.readonly, true);
  const picked = selectMounts(mounts, DEFAULT_IGNORED_FS_TYPES, new RegExp(DEFAULT_IGNORED_MOUNTPOINTS));
  t.same(
    picked.map((m) => m.mountpoint),
    ["/", "/run", "/mnt/my disk"],
  );
});

t.test("diskstats: bytes from sectors, seconds from ms, partitions ignored", async (t) => {
  const text = [
    "   8       0 sda 100 10 2000 300 200 20 4000 500 1 600 800 0 0 0 0",
    "   8       1 sda1 90 10 1800 290 190 20 3900 490 0 590 780 0 0 0 0",
    "   7       0 loop0 5 0 10 1 0 0 0 0 0 1 1",
    " 259       0 nvme0n1 1 2 3 4 5 6 7 8 9 10 11",
    " 259       1 nvme0n1p1 1 2 3 4 5 6 7 8 9 10 11",
  ].join("\n");
  const disks = parseDiskstats(text, new RegExp(DEFAULT_IGNORED_DEVICES));
  t.same(
    disks.map((d) => d.device),
    ["sda", "nvme0n1"],
  );
  t.same(disks[0], {
    device: "sda",
    readsCompleted: 100,
    readsMerged: 10,
    readBytes: 2000 * 512,
    readTimeSeconds: 0.3,
    writesCompleted: 200,
    writesMerged: 20,
    writtenBytes: 4000 * 512,
    writeTimeSeconds: 0.5,
    ioNow: 1,
    ioTimeSeconds: 0.6,
    ioTimeWeightedSeconds: 0.8,
  });
});

t.test("net/dev: receive and transmit columns per interface", async (t) => {
  const text = `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: 1000 10 0 0 0 0 0 0 1000 10 0 0 0 0 0 0
  eth0: 5000 50 1 2 0 0 0 0 7000 70 3 4 0 0 0 0
`;
  const all = parseNetDev(text, undefined);
  t.same(all[1], {
    device: "eth0",
    receiveBytes: 5000,
    receivePackets: 50,
    receiveErrs: 1,
    receiveDrop: 2,
    transmitBytes: 7000,
    transmitPackets: 70,
    transmitErrs: 3,
    transmitDrop: 4,
  });
  t.same(
    parseNetDev(text, /^lo$/).map((n) => n.device),
    ["eth0"],
  );
});

t.test("collector on a /proc without PSI or diskstats: those metrics are absent, no error", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "edgeway-proc-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, "stat"), STAT);
  writeFileSync(join(dir, "loadavg"), "1.00 2.00 3.00 1/1 1\n");
  writeFileSync(join(dir, "meminfo"), "MemTotal: 100 kB\n");
  mkdirSync(join(dir, "sys/fs"), { recursive: true });
  writeFileSync(join(dir, "sys/fs/file-nr"), "10 0 100\n");
  const collector = new HostCollector({
    procPath: dir,
    sysPath: join(dir, "nosys"),
    ignoredFsTypes: DEFAULT_IGNORED_FS_TYPES,
    ignoredMountpoints: new RegExp(DEFAULT_IGNORED_MOUNTPOINTS),
    ignoredDisks: new RegExp(DEFAULT_IGNORED_DEVICES),
    ignoredNetDevices: undefined,
    statfsTimeoutMs: 1000,
  });
  const snap = await collector.collect();
  t.equal(snap.pressure.cpu, undefined);
  t.equal(snap.disks, undefined);
  t.equal(snap.filesystems, undefined);
  t.same(snap.load, { load1: 1, load5: 2, load15: 3 });
  const { fixed, meminfo } = hostMetrics(() => snap);
  const byName = new Map(fixed.map((m) => [m.name, m.get().values]));
  t.same(byName.get("edgeway_host_pressure_cpu_waiting_seconds_total"), [], "no PSI: no samples");
  t.same(byName.get("edgeway_host_disk_reads_completed_total"), [], "no diskstats: no samples");
  t.same(byName.get("edgeway_host_load5"), [{ labels: {}, value: 2 }]);
  t.same(byName.get("edgeway_host_filefd_maximum"), [{ labels: {}, value: 100 }]);
  t.same(meminfo("MemTotal").get().values, [{ labels: {}, value: 102400 }]);
  t.equal(meminfo("MemTotal").name, "edgeway_host_memory_MemTotal_bytes");
});

t.test("collector on the real /proc and /sys reads everything quickly", async (t) => {
  const collector = new HostCollector({
    procPath: "/proc",
    sysPath: "/sys",
    ignoredFsTypes: DEFAULT_IGNORED_FS_TYPES,
    ignoredMountpoints: new RegExp(DEFAULT_IGNORED_MOUNTPOINTS),
    ignoredDisks: new RegExp(DEFAULT_IGNORED_DEVICES),
    ignoredNetDevices: undefined,
    statfsTimeoutMs: 1000,
  });
  await collector.collect();
  const snap = await collector.collect();
  t.ok(snap.stat && snap.stat.cpu.length >= 8);
  t.ok(snap.meminfo?.get("MemTotal"));
  t.ok(snap.filesystems && snap.filesystems.length >= 1);
  t.ok(snap.net?.some((n) => n.device === "lo"));
  t.ok(snap.collectMs < 100, `warm collect took ${snap.collectMs.toFixed(1)}ms`);
});
