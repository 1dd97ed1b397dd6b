/**
 * Where a feature's Redis is: the connection keys every `redis:` section shares (`auth.redis`,
 * `cache.redis`), one of a URL, Sentinels (+ master set name) or Cluster seed nodes, and a password.
 * Each feature adds its own keys (prefix, timeouts…) with `redisSection`. Schema only: loading a config
 * does not load ioredis (the client side is `client.ts`).
 */
import { z } from "zod";

const hostPort = z.strictObject({ host: z.string().min(1), port: z.number().int().min(1).max(65535) });

/** The connection keys; documented once per feature section in docs/configuration.md. */
export const redisConnectionShape = {
  url: z
    .string()
    .regex(/^rediss?:\/\//, 'expected a URL like "redis://127.0.0.1:6379"')
    .optional(),
  sentinels: z.array(hostPort).min(1).optional(),
  /** Sentinel master set name. */
  name: z.string().min(1).optional(),
  cluster: z.array(hostPort).min(1).optional(),
  password: z.string().optional(),
};

export interface HostPort {
  host: string;
  port: number;
}

/** A parsed connection: at most one of url, sentinels or cluster (see `redisSection`). */
export interface RedisConnection {
  url?: string | undefined;
  sentinels?: HostPort[] | undefined;
  name?: string | undefined;
  cluster?: HostPort[] | undefined;
  password?: string | undefined;
}

const TARGETS = ["url", "sentinels", "cluster"] as const;

/**
 * A feature's `redis:` section: the connection keys plus the feature's own. `target: "required"` makes
 * one of url, sentinels or cluster mandatory; `"optional"` lets none mean redis://127.0.0.1:6379.
 * Problems name the key: `auth.redis.cluster: use one of url, sentinels or cluster, not both url and cluster`.
 */
export function redisSection<S extends z.core.$ZodLooseShape>(
  own: S,
  opts: { target: "required" | "optional" },
) {
  return z.strictObject({ ...redisConnectionShape, ...own }).superRefine((parsed, ctx) => {
    const r = parsed as RedisConnection;
    const given = TARGETS.filter((k) => r[k] !== undefined);
    if (given.length > 1) {
      ctx.addIssue({
        code: "custom",
        path: [given[1]!],
        message: `use one of url, sentinels or cluster, not both ${given[0]} and ${given[1]}`,
      });
    }
    if (given.length === 0 && opts.target === "required") {
      ctx.addIssue({ code: "custom", path: [], message: "set one of url, sentinels or cluster" });
    }
    if (r.name !== undefined && r.sentinels === undefined) {
      ctx.addIssue({
        code: "custom",
        path: ["name"],
        message: "name is the Sentinel master set name: it needs sentinels",
      });
    }
  });
}
