import { z } from "zod";
import { byteSize, duration } from "../../lib/config/index.ts";
import { redisSection } from "../../lib/redis/schema.ts";

/** The top-level `cache:` section: storage shared by every route with a `cache` filter. */
export const cacheGlobalSchema = z
  .strictObject({
    /** Identifier in Cache-Status (RFC 9211). */
    name: z
      .string()
      .regex(/^[A-Za-z0-9._-]+$/, "a cache name is a token")
      .default("edgeway"),
    l1: z
      .strictObject({
        /** Bound of the in-process LRU, in bytes. */
        maxBytes: byteSize().prefault("256MiB"),
      })
      .prefault({}),
    /** Responses with larger bodies are streamed through and not stored. */
    maxObjectSize: byteSize().prefault("8MiB"),
    heuristic: z
      .strictObject({
        /** Share of (Date − Last-Modified) used as freshness when the origin gives none (RFC 9111 §4.2.2). */
        fraction: z.number().min(0).max(1).default(0.1),
        max: duration().default(86_400_000),
      })
      .prefault({}),
    /**
     * L2: Redis shared by all instances. Omit for L1 only. One of url, sentinels (+name) or cluster
     * (lib/redis); none means redis://127.0.0.1:6379.
     */
    redis: redisSection(
      {
        keyPrefix: z.string().default("edgeway:cache:"),
        /** Longest a request waits on one Redis operation before going on without it. */
        commandTimeout: duration({ min: 1, max: 5000 }).default(50),
        connectTimeout: duration({ min: 1 }).default(1000),
        /** After a Redis failure, skip Redis this long (requests go on with L1 and the upstream). */
        breaker: duration().default(1000),
        compression: z.enum(["zstd", "brotli", "none"]).default("zstd"),
        compressAbove: byteSize().prefault("1KiB"),
        /** Cross-instance fill lock: its lifetime, and how long other instances wait for the filler. */
        lockTtl: duration({ min: 10 }).default(5000),
        lockWait: duration().default(1000),
      },
      { target: "optional" },
    ).optional(),
  })
  .prefault({});
export type CacheGlobalConfig = z.output<typeof cacheGlobalSchema>;

/** A route's `- cache: {...}` entry: policy and key rules. Overrides are documented in docs/cache.md. */
export const cacheRouteSchema = z
  .strictObject({
    /** Who may share an entry: everyone, one tenant, or one user (from ex.state.auth, set by the token guard). */
    scope: z.enum(["public", "per-tenant", "per-user"]).default("public"),
    /** Freshness for responses without explicit freshness (replaces the Last-Modified heuristic). */
    ttl: duration().optional(),
    /** Freshness that replaces the origin's own (max-age, s-maxage, Expires, no-cache, must-revalidate). */
    forceTtl: duration().optional(),
    /** With forceTtl: store even no-store / private responses. */
    ignoreNoStore: z.boolean().default(false),
    /** Share responses that carry Set-Cookie. */
    storeSetCookie: z.boolean().default(false),
    /** Windows used when the origin sends no stale-while-revalidate / stale-if-error. */
    staleWhileRevalidate: duration().default(0),
    staleIfError: duration().default(0),
    /** Serve a stale entry when the origin cannot be reached (RFC 9111 §4.2.4), unless must-revalidate/no-cache. */
    staleOnDisconnect: z.boolean().default(true),
    /** Query parameters left out of the key (and still sent upstream); "utm_*" matches a prefix. */
    dropParams: z.array(z.string().min(1)).default([]),
    /** How long an uncacheable answer makes the key skip request coalescing (hit-for-pass). */
    hitForPass: duration().default(30_000),
    /** Use Redis (when configured) for this route. */
    l2: z.boolean().default(true),
    /** Add X-Cache and Cache-Status to responses. */
    statusHeaders: z.boolean().default(true),
  })
  .refine((c) => !c.ignoreNoStore || c.forceTtl !== undefined, {
    message: "ignoreNoStore needs forceTtl",
    path: ["ignoreNoStore"],
  });
export type CacheRouteConfig = z.output<typeof cacheRouteSchema>;
