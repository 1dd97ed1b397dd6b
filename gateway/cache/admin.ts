/** Admin-port endpoints: purge by URL, prefix or tag (hard or soft), and cache stats. */
import { z } from "zod";
import { formatIssues } from "../../lib/config/index.ts";
import { GatewayError } from "../core/problem.ts";
import type { AdminRoute } from "../core/types.ts";
import type { CacheCore } from "./core.ts";

export const purgeRequestSchema = z
  .strictObject({
    /** Exact URL: "host/path?query", or "/path?query" on any host. Query parameters are matched as stored (sorted). */
    url: z.string().min(1).optional(),
    /** URL prefix: "host/path" or "/path". */
    prefix: z.string().min(1).optional(),
    /** A Surrogate-Key / Cache-Tag value. */
    tag: z.string().min(1).optional(),
    /** Mark stale instead of deleting: entries still serve stale-if-error and revalidate with validators. */
    soft: z.boolean().default(false),
  })
  .refine(
    (r) => [r.url, r.prefix, r.tag].filter((x) => x !== undefined).length === 1,
    "give exactly one of url, prefix or tag",
  );
export type PurgeRequest = z.output<typeof purgeRequestSchema>;

/** Normalises a URL selector the way keys are built: query parameters sorted. */
export function normaliseSelectorUrl(v: string): string {
  const q = v.indexOf("?");
  if (q === -1) return v;
  const params = v
    .slice(q + 1)
    .split("&")
    .filter(Boolean);
  params.sort((a, b) => {
    const na = a.split("=")[0]!;
    const nb = b.split("=")[0]!;
    return na < nb ? -1 : na > nb ? 1 : 0;
  });
  return params.length ? `${v.slice(0, q)}?${params.join("&")}` : v.slice(0, q);
}

export function cacheAdminRoutes(core: CacheCore): AdminRoute[] {
  return [
    {
      method: "POST",
      path: "/admin/cache/purge",
      // Each worker purges its own memory tier: the counts add up (Redis deletes each key once).
      merge: "sum",
      async handle(_req, body) {
        let raw: unknown;
        try {
          raw = JSON.parse(body.toString("utf8") || "{}");
        } catch {
          throw new GatewayError(400, "bad_json", "the body is not valid JSON");
        }
        const r = purgeRequestSchema.safeParse(raw);
        if (!r.success) throw new GatewayError(400, "bad_purge", formatIssues(r.error.issues).join("; "));
        const p = r.data;
        const sel =
          p.tag !== undefined
            ? { kind: "tag" as const, value: p.tag }
            : p.prefix !== undefined
              ? { kind: "prefix" as const, value: p.prefix }
              : { kind: "url" as const, value: normaliseSelectorUrl(p.url!) };
        const n = await core.purge(sel, p.soft);
        return {
          status: 200,
          body: {
            purged: n.l1 + n.l2,
            l1: n.l1,
            l2: n.l2,
            soft: p.soft,
            redis: core.l2 ? core.l2.available : null,
          },
        };
      },
    },
    {
      method: "GET",
      path: "/admin/cache/stats",
      // Per worker: its memory tier and in-flight fills. Totals over the workers.
      merge: "sum",
      async handle() {
        return {
          status: 200,
          body: {
            l1: { entries: core.l1.size, bytes: core.l1.bytes, maxBytes: core.l1.maxBytes },
            l2: core.l2 ? { available: core.l2.available, writtenBytes: core.l2.writtenBytes } : null,
            inflight: core.inflight.size,
          },
        };
      },
    },
  ];
}
