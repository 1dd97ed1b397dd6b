import { z } from "zod";
import { duration } from "../../lib/config/index.ts";
import { jobTimingSchema } from "../config.ts";
import type { AgentModule } from "../module.ts";
import type { Job } from "../scheduler/job.ts";
import { HostCollector, type HostSnapshot } from "./collect.ts";
import { hostMetrics } from "./metrics.ts";
import { DEFAULT_IGNORED_DEVICES, DEFAULT_IGNORED_FS_TYPES, DEFAULT_IGNORED_MOUNTPOINTS } from "./parse.ts";

const regex = () =>
  z.string().superRefine((value, ctx) => {
    try {
      new RegExp(value);
    } catch (err) {
      ctx.addIssue({ code: "custom", message: `invalid regular expression: ${(err as Error).message}` });
    }
  });

export const hostSchema = z
  .strictObject({
    job: jobTimingSchema({ schedule: "*/15 * * * * *", timeout: "10s", jitter: "0s" }),
    procPath: z.string().default("/proc"),
    sysPath: z.string().default("/sys"),
    filesystems: z
      .strictObject({
        ignoredTypes: z.array(z.string()).default(DEFAULT_IGNORED_FS_TYPES),
        ignoredMountpoints: regex().default(DEFAULT_IGNORED_MOUNTPOINTS),
        statfsTimeout: duration({ min: 1 }).prefault("1s"),
      })
      .prefault({}),
    disks: z.strictObject({ ignoredDevices: regex().default(DEFAULT_IGNORED_DEVICES) }).prefault({}),
    network: z.strictObject({ ignoredDevices: regex().optional() }).prefault({}),
  })
  .prefault({});
export type HostConfig = z.output<typeof hostSchema>;

export const HOST_JOB = "host-metrics";

/** The `host-metrics` job: reads /proc and /sys on its schedule; /metrics renders the latest reading. */
export const hostModule: AgentModule<HostConfig> = {
  name: "host",
  schema: hostSchema,
  createJobs(config, deps): Job[] {
    if (!config.job.enabled) return [];
    const collector = new HostCollector({
      procPath: config.procPath,
      sysPath: config.sysPath,
      ignoredFsTypes: config.filesystems.ignoredTypes,
      ignoredMountpoints: new RegExp(config.filesystems.ignoredMountpoints),
      ignoredDisks: new RegExp(config.disks.ignoredDevices),
      ignoredNetDevices: config.network.ignoredDevices
        ? new RegExp(config.network.ignoredDevices)
        : undefined,
      statfsTimeoutMs: config.filesystems.statfsTimeout,
    });
    let latest: HostSnapshot | undefined;
    const { fixed, meminfo } = hostMetrics(() => latest);
    const registry = deps.telemetry.registry;
    for (const metric of fixed) registry.registerMetric(metric as never);
    const memFields = new Set<string>();
    return [
      {
        name: HOST_JOB,
        schedule: config.job.schedule,
        timeoutMs: config.job.timeout,
        jitterMs: config.job.jitter,
        async run() {
          latest = await collector.collect();
          for (const field of latest.meminfo?.keys() ?? []) {
            if (memFields.has(field)) continue;
            memFields.add(field);
            registry.registerMetric(meminfo(field) as never);
          }
          return { summary: `read /proc and /sys in ${latest.collectMs.toFixed(1)}ms` };
        },
        status: () => (latest ? { collectMs: Number(latest.collectMs.toFixed(2)) } : undefined),
      },
    ];
  },
  commands: [],
};
