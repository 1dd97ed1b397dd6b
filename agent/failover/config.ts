import { z } from "zod";
import { byteSize, duration } from "../../lib/config/index.ts";
import { checkTimings, type Timings } from "./policy.ts";

const regionSchema = z.strictObject({
  name: z.string().min(1),
  /** How other agents reach this region's PostgreSQL (probe, pg_rewind source, remote fence). Absent: no database. */
  postgres: z.string().min(1).optional(),
  /** The gateway upstreams of this region (for the topology and DNS intent). */
  upstreams: z.array(z.string().min(1)).default([]),
  /** Public addresses of the region's gateways, for the DNS records (IPv4 and/or IPv6). */
  addresses: z.array(z.union([z.ipv4(), z.ipv6()], { error: "expected an IP address" })).default([]),
  /** What a DNS provider's health checker probes for this region (documented in the intent). */
  healthCheck: z.url().optional(),
});

const dnsName = z
  .string()
  .regex(
    /^([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.)+[a-z]{2,63}\.?$/i,
    "expected a DNS name like api.example.com",
  );

/** DNS published by the leader after each topology change (docs/multi-region.md). */
const dnsSchema = z
  .strictObject({
    /** The switch: false keeps the config but publishes nothing. */
    enabled: z.boolean().default(true),
    ttl: duration({ min: 1000 }).prefault("30s"),
    /** Failover name: the primary region's gateways. */
    writeName: dnsName.optional(),
    /** Latency or geolocation name: every healthy region's gateways. */
    readName: dnsName.optional(),
    readPolicy: z.enum(["latency", "geo"]).default("latency"),
    countries: z.record(z.string().regex(/^[A-Za-z]{2}$/), z.string()).default({}),
    defaultRegion: z.string().optional(),
    /** Re-publish at least this often even without a change (repairs edits made behind our back). */
    resync: duration({ min: 1000 }).prefault("5m"),
    provider: z.strictObject({
      rfc2136: z.strictObject({
        server: z.string().min(1),
        port: z.number().int().min(1).max(65535).default(53),
        zone: dnsName,
        key: z
          .strictObject({
            name: z.string().min(1),
            algorithm: z
              .enum(["hmac-sha256", "hmac-sha384", "hmac-sha512", "hmac-sha1"])
              .default("hmac-sha256"),
            secret: z.base64(),
          })
          .optional(),
        timeout: duration({ min: 100 }).prefault("3s"),
      }),
    }),
  })
  .refine((d) => d.writeName || d.readName, "needs writeName or readName");

/** The `failover:` section of the agent config. Absent: the module runs nothing. */
export const failoverSectionSchema = z
  .strictObject({
    etcd: z.strictObject({
      endpoints: z.array(z.string().min(1)).min(1),
      prefix: z.string().min(1).default("/edgeway/failover/"),
      /** Deadline of one etcd call; a keep-alive slower than this counts as missed. */
      requestTimeout: duration({ min: 50 }).prefault("1s"),
    }),
    /** Every region, in preference order (candidate ties, DNS failover order). */
    regions: z.array(regionSchema).min(1),
    /** The primary region written when etcd holds no topology yet. */
    initialPrimary: z.string().min(1),
    /** automatic: the leader fails over; manual: it only writes a proposal for an operator. */
    mode: z.enum(["automatic", "manual"]).default("automatic"),
    ttl: duration({ min: 2000 }).prefault("6s"),
    loopWait: duration({ min: 50 }).prefault("1s"),
    fenceMargin: duration({ min: 1 }).prefault("2.5s"),
    fenceCheck: duration({ min: 10 }).prefault("250ms"),
    fenceTimeout: duration({ min: 50 }).prefault("1s"),
    /**
     * readOnly: the fence is default_transaction_read_only + ending client sessions (a new session can
     * override it). stop: after that, a primary that still may not write is stopped with pg_ctl, and
     * started again only when the topology gives it back (needs postgres.manage).
     */
    fenceMode: z.enum(["readOnly", "stop"]).default("readOnly"),
    clockDrift: z.number().min(0).max(0.5).default(0.01),
    failureWindow: duration().prefault("3s"),
    /** A health report older than this does not count (its agent is not publishing). */
    staleAfter: duration({ min: 1 }).prefault("3s"),
    maxLag: byteSize().prefault("16MiB"),
    minInterval: duration().prefault("5m"),
    switchoverTimeout: duration({ min: 100 }).prefault("10s"),
    promoteTimeout: duration({ min: 100 }).prefault("10s"),
    probeTimeout: duration({ min: 50 }).prefault("1s"),
    dns: dnsSchema.optional(),
    postgres: z
      .strictObject({
        /** The local PostgreSQL as a superuser; defaults to agent.postgres.url. */
        url: z.string().min(1).optional(),
        /** Let the agent stop, start and pg_rewind the local server (needs dataDir). */
        manage: z.boolean().default(false),
        dataDir: z.string().min(1).optional(),
        binDir: z.string().min(1).optional(),
        runAs: z.string().min(1).optional(),
        logFile: z.string().min(1).optional(),
        /** Rejoin an old primary as a standby of the new one automatically. */
        autoRejoin: z.boolean().default(true),
      })
      .prefault({}),
  })
  .superRefine((cfg, ctx) => {
    const names = cfg.regions.map((r) => r.name);
    names.forEach((n, i) => {
      if (names.indexOf(n) !== i)
        ctx.addIssue({
          code: "custom",
          path: ["regions", i, "name"],
          message: `duplicate region ${JSON.stringify(n)}`,
        });
    });
    if (!names.includes(cfg.initialPrimary)) {
      ctx.addIssue({
        code: "custom",
        path: ["initialPrimary"],
        message: `must be one of the regions (${names.join(", ")})`,
      });
    }
    if (cfg.postgres.manage && !cfg.postgres.dataDir) {
      ctx.addIssue({
        code: "custom",
        path: ["postgres", "dataDir"],
        message: "is required when postgres.manage is true",
      });
    }
    if (cfg.fenceMode === "stop" && !cfg.postgres.manage) {
      ctx.addIssue({
        code: "custom",
        path: ["fenceMode"],
        message:
          '"stop" needs postgres.manage: true and postgres.dataDir (the agent stops and starts the local server with pg_ctl)',
      });
    }
    const dns = cfg.dns;
    if (dns) {
      for (const [key, region] of [
        ...Object.entries(dns.countries).map(([c, r]) => [`countries.${c}`, r] as const),
        ...(dns.defaultRegion ? [["defaultRegion", dns.defaultRegion] as const] : []),
      ]) {
        if (!names.includes(region))
          ctx.addIssue({
            code: "custom",
            path: ["dns", ...key.split(".")],
            message: `unknown region ${region}`,
          });
      }
      if (!cfg.regions.some((r) => r.addresses.length > 0))
        ctx.addIssue({ code: "custom", path: ["dns"], message: "no region lists addresses to publish" });
    }
    for (const problem of checkTimings(timingsOf(cfg)))
      ctx.addIssue({ code: "custom", path: ["ttl"], message: problem });
  });

export type FailoverConfig = z.output<typeof failoverSectionSchema>;

export function timingsOf(cfg: {
  ttl: number;
  loopWait: number;
  fenceMargin: number;
  fenceCheck: number;
  fenceTimeout: number;
  clockDrift: number;
  failureWindow: number;
  etcd: { requestTimeout: number };
}): Timings {
  return {
    ttlMs: cfg.ttl,
    loopMs: cfg.loopWait,
    fenceMarginMs: cfg.fenceMargin,
    fenceCheckMs: cfg.fenceCheck,
    fenceTimeoutMs: cfg.fenceTimeout,
    requestTimeoutMs: cfg.etcd.requestTimeout,
    clockDrift: cfg.clockDrift,
    failureWindowMs: cfg.failureWindow,
  };
}
