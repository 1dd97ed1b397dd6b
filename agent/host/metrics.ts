import { type Sample, type SnapshotMetric, single, snapshotMetrics } from "../metrics/snapshot-metric.ts";
import type { HostSnapshot } from "./collect.ts";

const P = "edgeway_host_";

/**
 * The host metrics, named after node_exporter's (`node_` → `edgeway_host_`), read from the latest
 * snapshot. `docs/agent.md` lists the mapping. Meminfo fields are dynamic, so they are one metric each.
 */
export function hostMetrics(latest: () => HostSnapshot | undefined): {
  fixed: SnapshotMetric[];
  meminfo: (field: string) => SnapshotMetric;
} {
  const m = snapshotMetrics(P, latest);
  const one = single;
  const perDev = <T extends { device: string }>(
    rows: T[] | undefined,
    pick: (r: T) => number,
  ): Sample[] | undefined => rows?.map((r) => ({ labels: { device: r.device }, value: pick(r) }));
  const fsLabels = (f: { device: string; mountpoint: string; fstype: string }) => ({
    device: f.device,
    mountpoint: f.mountpoint,
    fstype: f.fstype,
  });
  const fs = (pick: (f: NonNullable<HostSnapshot["filesystems"]>[number]) => number) => (s: HostSnapshot) =>
    s.filesystems?.map((f) => ({ labels: fsLabels(f), value: pick(f) }));
  const psi = (res: "cpu" | "memory" | "io", kind: "some" | "full") => (s: HostSnapshot) =>
    one(kind === "some" ? s.pressure[res]?.someSeconds : s.pressure[res]?.fullSeconds);

  const fixed = [
    m("cpu_seconds_total", "counter", "Seconds the CPUs spent in each mode.", (s) =>
      s.stat?.cpu.map((c) => ({ labels: { cpu: c.cpu, mode: c.mode }, value: c.seconds })),
    ),
    m("context_switches_total", "counter", "Total number of context switches.", (s) =>
      one(s.stat?.contextSwitches),
    ),
    m("intr_total", "counter", "Total number of interrupts serviced.", (s) => one(s.stat?.interrupts)),
    m("forks_total", "counter", "Total number of forks.", (s) => one(s.stat?.forks)),
    m("boot_time_seconds", "gauge", "Node boot time, in unixtime.", (s) => one(s.stat?.bootTime)),
    m("procs_running", "gauge", "Number of processes in runnable state.", (s) => one(s.stat?.procsRunning)),
    m("procs_blocked", "gauge", "Number of processes blocked waiting for I/O to complete.", (s) =>
      one(s.stat?.procsBlocked),
    ),
    m("load1", "gauge", "1m load average.", (s) => one(s.load?.load1)),
    m("load5", "gauge", "5m load average.", (s) => one(s.load?.load5)),
    m("load15", "gauge", "15m load average.", (s) => one(s.load?.load15)),
    m(
      "pressure_cpu_waiting_seconds_total",
      "counter",
      "Total time in seconds that processes have waited for CPU time.",
      psi("cpu", "some"),
    ),
    m(
      "pressure_cpu_stalled_seconds_total",
      "counter",
      "Total time in seconds no process could make progress due to CPU congestion.",
      psi("cpu", "full"),
    ),
    m(
      "pressure_memory_waiting_seconds_total",
      "counter",
      "Total time in seconds that processes have waited for memory.",
      psi("memory", "some"),
    ),
    m(
      "pressure_memory_stalled_seconds_total",
      "counter",
      "Total time in seconds no process could make progress due to memory congestion.",
      psi("memory", "full"),
    ),
    m(
      "pressure_io_waiting_seconds_total",
      "counter",
      "Total time in seconds that processes have waited due to IO congestion.",
      psi("io", "some"),
    ),
    m(
      "pressure_io_stalled_seconds_total",
      "counter",
      "Total time in seconds no process could make progress due to IO congestion.",
      psi("io", "full"),
    ),
    m(
      "filesystem_size_bytes",
      "gauge",
      "Filesystem size in bytes.",
      fs((f) => f.sizeBytes),
    ),
    m(
      "filesystem_free_bytes",
      "gauge",
      "Filesystem free space in bytes.",
      fs((f) => f.freeBytes),
    ),
    m(
      "filesystem_avail_bytes",
      "gauge",
      "Filesystem space available to non-root users in bytes.",
      fs((f) => f.availBytes),
    ),
    m(
      "filesystem_files",
      "gauge",
      "Filesystem total file nodes.",
      fs((f) => f.files),
    ),
    m(
      "filesystem_files_free",
      "gauge",
      "Filesystem total free file nodes.",
      fs((f) => f.filesFree),
    ),
    m(
      "filesystem_readonly",
      "gauge",
      "Filesystem read-only status.",
      fs((f) => (f.readonly ? 1 : 0)),
    ),
    m("disk_reads_completed_total", "counter", "The total number of reads completed successfully.", (s) =>
      perDev(s.disks, (d) => d.readsCompleted),
    ),
    m("disk_reads_merged_total", "counter", "The total number of reads merged.", (s) =>
      perDev(s.disks, (d) => d.readsMerged),
    ),
    m("disk_read_bytes_total", "counter", "The total number of bytes read successfully.", (s) =>
      perDev(s.disks, (d) => d.readBytes),
    ),
    m("disk_read_time_seconds_total", "counter", "The total number of seconds spent by all reads.", (s) =>
      perDev(s.disks, (d) => d.readTimeSeconds),
    ),
    m("disk_writes_completed_total", "counter", "The total number of writes completed successfully.", (s) =>
      perDev(s.disks, (d) => d.writesCompleted),
    ),
    m("disk_writes_merged_total", "counter", "The number of writes merged.", (s) =>
      perDev(s.disks, (d) => d.writesMerged),
    ),
    m("disk_written_bytes_total", "counter", "The total number of bytes written successfully.", (s) =>
      perDev(s.disks, (d) => d.writtenBytes),
    ),
    m(
      "disk_write_time_seconds_total",
      "counter",
      "This is the total number of seconds spent by all writes.",
      (s) => perDev(s.disks, (d) => d.writeTimeSeconds),
    ),
    m("disk_io_now", "gauge", "The number of I/Os currently in progress.", (s) =>
      perDev(s.disks, (d) => d.ioNow),
    ),
    m("disk_io_time_seconds_total", "counter", "Total seconds spent doing I/Os.", (s) =>
      perDev(s.disks, (d) => d.ioTimeSeconds),
    ),
    m(
      "disk_io_time_weighted_seconds_total",
      "counter",
      "The weighted number of seconds spent doing I/Os.",
      (s) => perDev(s.disks, (d) => d.ioTimeWeightedSeconds),
    ),
    m("network_receive_bytes_total", "counter", "Network device statistic receive_bytes.", (s) =>
      perDev(s.net, (n) => n.receiveBytes),
    ),
    m("network_receive_packets_total", "counter", "Network device statistic receive_packets.", (s) =>
      perDev(s.net, (n) => n.receivePackets),
    ),
    m("network_receive_errs_total", "counter", "Network device statistic receive_errs.", (s) =>
      perDev(s.net, (n) => n.receiveErrs),
    ),
    m("network_receive_drop_total", "counter", "Network device statistic receive_drop.", (s) =>
      perDev(s.net, (n) => n.receiveDrop),
    ),
    m("network_transmit_bytes_total", "counter", "Network device statistic transmit_bytes.", (s) =>
      perDev(s.net, (n) => n.transmitBytes),
    ),
    m("network_transmit_packets_total", "counter", "Network device statistic transmit_packets.", (s) =>
      perDev(s.net, (n) => n.transmitPackets),
    ),
    m("network_transmit_errs_total", "counter", "Network device statistic transmit_errs.", (s) =>
      perDev(s.net, (n) => n.transmitErrs),
    ),
    m("network_transmit_drop_total", "counter", "Network device statistic transmit_drop.", (s) =>
      perDev(s.net, (n) => n.transmitDrop),
    ),
    m("network_up", "gauge", "Value is 1 if operstate is 'up', 0 otherwise.", (s) =>
      perDev(s.links, (l) => (l.up ? 1 : 0)),
    ),
    m("network_speed_bytes", "gauge", "Link speed in bytes per second.", (s) =>
      s.links?.flatMap((l) =>
        l.speedBytes === undefined ? [] : [{ labels: { device: l.device }, value: l.speedBytes }],
      ),
    ),
    m("filefd_allocated", "gauge", "File descriptor statistics: allocated.", (s) => one(s.fileNr?.allocated)),
    m("filefd_maximum", "gauge", "File descriptor statistics: maximum.", (s) => one(s.fileNr?.maximum)),
    m("collect_duration_seconds", "gauge", "How long the last reading of /proc and /sys took.", (s) =>
      one(s.collectMs / 1000),
    ),
  ];

  const meminfo = (field: string) => {
    // node_exporter: fields given in kB become <Field>_bytes; plain counts (HugePages_Total) keep their name.
    const bytes = !field.startsWith("HugePages_");
    return m(
      `memory_${field}${bytes ? "_bytes" : ""}`,
      "gauge",
      `Memory information field ${field}${bytes ? "_bytes" : ""}.`,
      (s) => one(s.meminfo?.get(field)),
    );
  };
  return { fixed, meminfo };
}
