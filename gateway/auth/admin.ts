import { z } from "zod";
import { GatewayError } from "../core/problem.ts";
import type { AdminRoute } from "../core/types.ts";
import type { TokenGuard } from "./guard.ts";
import { makeRule, type Rule, type RuleKind, ruleKey } from "./rules.ts";

const id = z.string().min(1).max(512);
const ids = z.array(id).max(1_000_000);
const instant = z
  .union([z.iso.datetime({ offset: true }), z.number().int().nonnegative()])
  .transform((v) => (typeof v === "number" ? v : Date.parse(v)));

/** Targets of a revoke/unrevoke call: singular or plural forms of each kind. */
const targets = z.strictObject({
  subject: id.optional(),
  subjects: ids.optional(),
  client: id.optional(),
  clients: ids.optional(),
  family: id.optional(),
  families: ids.optional(),
  jti: id.optional(),
  jtis: ids.optional(),
});

export const revokeSchema = targets.extend({
  /** Tokens issued before this instant are rejected (subject/client rules). Default: now. */
  issuedBefore: instant.optional(),
  /** Rule expiry; default: when no token it can hit can still be valid. */
  expiresAt: instant.optional(),
  reason: z.string().max(200).optional(),
});

function collect(t: z.output<typeof targets>): { kind: RuleKind; id: string }[] {
  const out: { kind: RuleKind; id: string }[] = [];
  const add = (kind: RuleKind, one: string | undefined, many: string[] | undefined) => {
    if (one !== undefined) out.push({ kind, id: one });
    for (const x of many ?? []) out.push({ kind, id: x });
  };
  add("subject", t.subject, t.subjects);
  add("client", t.client, t.clients);
  add("family", t.family, t.families);
  add("jti", t.jti, t.jtis);
  return out;
}

function parse<T extends z.ZodType>(schema: T, body: Buffer): z.output<T> {
  let json: unknown;
  try {
    json = body.length === 0 ? {} : JSON.parse(body.toString("utf8"));
  } catch {
    throw new GatewayError(400, "bad_json", "the body is not JSON");
  }
  const r = schema.safeParse(json);
  if (!r.success)
    throw new GatewayError(
      400,
      "bad_request",
      r.error.issues.map((i) => `${i.path.join(".") || "(body)"}: ${i.message}`).join("; "),
    );
  return r.data;
}

/** Admin-port endpoints: revocation rules (token or mTLS protected by the core) and status. */
export function authAdminRoutes(guard: TokenGuard): AdminRoute[] {
  const store = guard.store;
  return [
    {
      method: "POST",
      path: "/admin/auth/revoke",
      async handle(_req, body) {
        const input = parse(revokeSchema, body);
        const now = Date.now();
        const list = collect(input);
        if (list.length === 0)
          throw new GatewayError(400, "bad_request", "name at least one subject, client, family or jti");
        if (input.issuedBefore !== undefined && input.issuedBefore > now + guard.cfg.clockTolerance)
          throw new GatewayError(
            400,
            "bad_request",
            "issuedBefore is in the future: it would block new logins",
          );
        if (input.issuedBefore !== undefined && list.some((t) => t.kind === "family" || t.kind === "jti"))
          throw new GatewayError(400, "bad_request", "issuedBefore applies to subject and client rules only");
        const rules: Rule[] = list.map((t) =>
          makeRule(
            { ...t, notBefore: input.issuedBefore, expiresAt: input.expiresAt, reason: input.reason },
            guard.lifetimes,
            now,
          ),
        );
        try {
          await store.add(rules);
        } catch (err) {
          throw new GatewayError(
            503,
            "store_unavailable",
            "the rules apply here but could not be stored in Redis",
            {
              cause: err,
            },
          );
        }
        const byKind: Record<string, number> = {};
        for (const r of rules) byKind[r.kind] = (byKind[r.kind] ?? 0) + 1;
        return {
          status: 200,
          body: {
            added: rules.length,
            byKind,
            notBefore:
              rules[0]!.notBefore !== undefined ? new Date(rules[0]!.notBefore).toISOString() : undefined,
            expiresAt: new Date(Math.max(...rules.map((r) => r.expiresAt))).toISOString(),
          },
        };
      },
    },
    {
      method: "POST",
      path: "/admin/auth/unrevoke",
      async handle(_req, body) {
        const list = collect(parse(targets, body));
        if (list.length === 0) throw new GatewayError(400, "bad_request", "name at least one target");
        try {
          const removed = await store.remove(list.map((t) => ruleKey(t.kind, t.id)));
          return { status: 200, body: { removed } };
        } catch (err) {
          throw new GatewayError(503, "store_unavailable", "the rules could not be removed from Redis", {
            cause: err,
          });
        }
      },
    },
    {
      // POST, not GET: rule ids are user identifiers, so reading them needs the admin token too.
      method: "POST",
      path: "/admin/auth/rules",
      async handle(_req, body) {
        const input = parse(
          targets.extend({ limit: z.number().int().min(1).max(10_000).default(100) }),
          body,
        );
        const list = collect(input);
        const rules =
          list.length > 0
            ? list.flatMap((t) => {
                const r = store.get(ruleKey(t.kind, t.id));
                return r ? [r] : [];
              })
            : store.list(input.limit);
        return {
          status: 200,
          body: {
            rules: rules.map((r) => ({
              ...r,
              notBefore: r.notBefore !== undefined ? new Date(r.notBefore).toISOString() : undefined,
              expiresAt: new Date(r.expiresAt).toISOString(),
              createdAt: new Date(r.createdAt).toISOString(),
            })),
          },
        };
      },
    },
    {
      method: "GET",
      path: "/admin/auth/status",
      async handle() {
        return {
          status: 200,
          body: {
            rules: store.countByKind(),
            store: { redis: store.usesRedis, readable: store.readable },
            keys: {
              loaded: guard.keys.jwks !== undefined,
              kids: guard.keys.jwks?.keys.map((k) => k.kid ?? null) ?? [],
              ...guard.keys.stats,
            },
          },
        };
      },
    },
  ];
}
