import { isUtf8 } from "node:buffer";
import type { Readable } from "node:stream";
import { trace } from "@opentelemetry/api";
import { GatewayError } from "../core/problem.ts";
import type {
  Exchange,
  Filter,
  FilterFactory,
  FilterSetup,
  GatewayResponse,
  HeaderMap,
} from "../core/types.ts";
import { authAdminRoutes } from "./admin.ts";
import { type AuthGlobalConfig, type AuthRouteConfig, authGlobalSchema, authRouteSchema } from "./config.ts";
import { TokenGuard, type VerifiedToken } from "./guard.ts";
import { Introspector } from "./introspection.ts";
import { KeySource } from "./keys.ts";
import { AuthMetrics } from "./metrics.ts";
import { claimHeaderValue, scopes, TokenRejected, UNAVAILABLE_REASONS } from "./policy.ts";
import { AuthStore } from "./store.ts";

const tracer = () => trace.getTracer("edgeway-gateway");
const FORM = /^application\/x-www-form-urlencoded\s*(;|$)/i;
/** RFC 6750 §2.1 b64token after "Bearer" and one or more spaces. */
const BEARER = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i;
const BODY_READ_TIMEOUT = 10_000;

/** What the guard puts in `ex.state.auth` for later filters (the cache scopes per user/tenant with it). */
export interface AuthState {
  sub: string | undefined;
  tenant: string | undefined;
  clientId: string | undefined;
  claims: Record<string, unknown>;
}

/**
 * The parts shared by every route: metrics for the process's life; keys, rules and introspection for as
 * long as a route table uses their settings (a reload that changes them builds new ones).
 */
export function authContext(
  setup: Pick<FilterSetup<AuthGlobalConfig>, "global" | "shared" | "scoped" | "telemetry" | "logger">,
): {
  guard: TokenGuard;
  metrics: AuthMetrics;
} {
  const g = setup.global;
  const metrics = setup.shared("metrics", () => new AuthMetrics(setup.telemetry.registry));
  const keys = setup.scoped(`keys:${JSON.stringify(g.jwks)}`, () => new KeySource(g.jwks, setup.logger));
  const store = setup.scoped(
    `store:${JSON.stringify(g.redis ?? null)}`,
    () => new AuthStore(g.redis, setup.logger),
  );
  const intro = g.refreshTokens.introspection;
  const introspector = intro
    ? setup.scoped(`introspection:${JSON.stringify(intro)}`, () => new Introspector(intro))
    : undefined;
  return { guard: new TokenGuard(g, keys, store, introspector), metrics };
}

/** RFC 6749 §5.2 error answer of a token endpoint. */
function oauthError(
  status: number,
  error: string,
  description: string,
  headers: HeaderMap = {},
): GatewayResponse {
  return {
    status,
    headers: {
      "content-type": "application/json",
      "cache-control": "no-store",
      pragma: "no-cache",
      ...headers,
    },
    body: JSON.stringify({ error, error_description: description }),
  };
}

/** Reads a request body up to `limit` bytes; null when it is larger (the rest is left unread). */
function readBounded(
  body: Readable | Buffer | null,
  limit: number,
  signal: AbortSignal,
): Promise<Buffer | null> {
  if (body === null) return Promise.resolve(Buffer.alloc(0));
  if (Buffer.isBuffer(body)) return Promise.resolve(body.length > limit ? null : body);
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const timer = setTimeout(
      () => finish(new GatewayError(408, "request_timeout", "the request body was not received in time")),
      BODY_READ_TIMEOUT,
    );
    const onAbort = () => finish(new GatewayError(499, "client_closed", "the client went away"));
    const finish = (out: Buffer | null | Error) => {
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
      body.off("data", onData).off("end", onEnd).off("error", onError);
      if (out instanceof Error) reject(out);
      else resolve(out);
    };
    const onData = (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        body.pause();
        finish(null);
      } else chunks.push(c);
    };
    const onEnd = () => finish(Buffer.concat(chunks, size));
    const onError = (err: Error) =>
      finish(new GatewayError(400, "bad_body", "the request body could not be read", { cause: err }));
    signal.addEventListener("abort", onAbort, { once: true });
    body.on("data", onData).once("end", onEnd).once("error", onError);
  });
}

/** Parameters of a form body; undefined when a parameter repeats (RFC 6749 §3.2: never more than once). */
function formParams(text: string): Map<string, string> | undefined {
  const out = new Map<string, string>();
  for (const [k, v] of new URLSearchParams(text)) {
    if (out.has(k)) return undefined;
    out.set(k, v);
  }
  return out;
}

export const authFilter: FilterFactory<AuthRouteConfig, AuthGlobalConfig> = {
  name: "auth",
  schema: authRouteSchema,
  globalSchema: authGlobalSchema,
  admin: (setup) => authAdminRoutes(authContext(setup).guard),
  create(config, setup): Filter {
    const { guard, metrics } = authContext(setup);
    const route = setup.routeName;
    const strip = [...new Set([...Object.values(config.forwardClaims), ...config.stripHeaders])];
    const forward = Object.entries(config.forwardClaims);
    const realm = guard.cfg.accessTokens.realm;
    const required = config.requiredScopes;

    const rejected = (ex: Exchange, err: unknown): TokenRejected => {
      const r =
        err instanceof TokenRejected
          ? err
          : new TokenRejected("malformed", "the token could not be validated", { cause: err });
      if (!(err instanceof TokenRejected))
        ex.logger.error({ err, request_id: ex.id, route }, "token validation failed unexpectedly");
      metrics.rejections.labels(route, r.reason).inc();
      ex.logFields.auth = r.reason;
      return r;
    };

    const accept = (ex: Exchange, v: VerifiedToken) => {
      metrics.accepted.labels(route, v.kind).inc();
      ex.state.auth = {
        sub: v.sub,
        tenant: v.tenant,
        clientId: v.clientId,
        claims: v.claims,
      } satisfies AuthState;
      ex.logFields.auth = "ok";
      if (v.sub) ex.logFields.auth_sub = v.sub;
    };

    const stripClientHeaders = (ex: Exchange) => {
      for (const h of strip) delete ex.request.headers[h];
    };

    const refreshEndpoint = async (ex: Exchange, next: (ex: Exchange) => Promise<GatewayResponse>) => {
      stripClientHeaders(ex);
      const badRequest = (description: string) => {
        metrics.rejections.labels(route, "bad_request").inc();
        ex.logFields.auth = "bad_request";
        return oauthError(400, "invalid_request", description);
      };
      // Some servers merge query and body parameters: the grant must come from the body we validate.
      if (ex.search) {
        const q = new URLSearchParams(ex.search);
        if (q.has("refresh_token") || q.has("grant_type"))
          return badRequest("token parameters belong in the request body");
      }
      // No body, nothing to validate (whatever the method: any body is checked, not only POST's).
      if (ex.request.body === null) return next(ex);
      // A compressed or non-UTF-8 body would be read differently here and by the auth service.
      const encoding = String(ex.incoming.headers["content-encoding"] ?? "identity")
        .trim()
        .toLowerCase();
      if (encoding !== "identity") return badRequest("token requests cannot be content-encoded");
      const limit = guard.cfg.refreshTokens.maxBodySize;
      const declared = Number(ex.incoming.headers["content-length"]);
      if (declared > limit) {
        metrics.rejections.labels(route, "bad_request").inc();
        throw new GatewayError(413, "body_too_large", `token requests are limited to ${limit} bytes`);
      }
      const body = await readBounded(ex.request.body, limit, ex.signal);
      if (body === null) {
        metrics.rejections.labels(route, "bad_request").inc();
        throw new GatewayError(413, "body_too_large", `token requests are limited to ${limit} bytes`);
      }
      // From here on the upstream gets exactly these bytes.
      ex.request.body = body.length > 0 ? body : null;
      if (body.length === 0) return next(ex);
      const ctype = String(ex.incoming.headers["content-type"] ?? "");
      if (!FORM.test(ctype)) return badRequest("token requests are application/x-www-form-urlencoded");
      const charset = /;\s*charset\s*=\s*"?([^";\s]+)/i.exec(ctype)?.[1]?.toLowerCase();
      if (charset !== undefined && charset !== "utf-8" && charset !== "us-ascii")
        return badRequest("token requests are UTF-8");
      if (!isUtf8(body)) return badRequest("token requests are UTF-8");
      const params = formParams(body.toString("utf8"));
      if (!params) return badRequest("a parameter is repeated");
      if (params.get("grant_type") !== "refresh_token") {
        if (params.has("refresh_token"))
          return badRequest("refresh_token is only valid with grant_type=refresh_token");
        return next(ex);
      }
      const token = params.get("refresh_token") ?? "";
      const span = tracer().startSpan(
        "auth.refresh_token",
        { attributes: { "edgeway.route": route } },
        ex.traceContext,
      );
      try {
        if (token === "") throw new TokenRejected("missing_token", "refresh_token is required");
        const v = token.includes(".")
          ? await guard.verifyJwt(token, "refresh")
          : await guard.verifyOpaqueRefresh(token);
        await guard.recordUse(v);
        accept(ex, v);
      } catch (err) {
        if (err instanceof GatewayError) throw err;
        const r = rejected(ex, err);
        span.setAttribute("edgeway.auth.rejection", r.reason);
        if (r.reason === "missing_token") return oauthError(400, "invalid_request", r.message);
        if (UNAVAILABLE_REASONS.has(r.reason))
          return oauthError(
            503,
            "temporarily_unavailable",
            "the token cannot be checked right now; retry later",
            {
              "retry-after": "5",
            },
          );
        return oauthError(400, "invalid_grant", r.message);
      } finally {
        span.end();
      }
      return next(ex);
    };

    const protectedResource = async (ex: Exchange, next: (ex: Exchange) => Promise<GatewayResponse>) => {
      stripClientHeaders(ex);
      const header = ex.incoming.headers.authorization;
      const m = typeof header === "string" ? BEARER.exec(header) : null;
      if (!m) {
        const hasBearer = typeof header === "string" && /^bearer(\s|$)/i.test(header);
        const r = rejected(
          ex,
          new TokenRejected(hasBearer ? "malformed" : "missing_token", "a bearer token is required"),
        );
        throw new GatewayError(
          401,
          hasBearer ? "invalid_token" : "token_required",
          hasBearer ? "the bearer token is malformed" : "a bearer token is required",
          {
            headers: {
              "www-authenticate": hasBearer
                ? `Bearer realm="${realm}", error="invalid_token", error_description="${r.reason}"`
                : `Bearer realm="${realm}"`,
            },
          },
        );
      }
      const span = tracer().startSpan(
        "auth.access_token",
        { attributes: { "edgeway.route": route } },
        ex.traceContext,
      );
      let v: VerifiedToken;
      try {
        v = await guard.verifyJwt(m[1]!, "access");
        if (required.length > 0) {
          const have = scopes(v.claims);
          if (!required.every((s) => have.has(s)))
            throw new TokenRejected("insufficient_scope", "the token lacks a required scope");
        }
      } catch (err) {
        const r = rejected(ex, err);
        span.setAttribute("edgeway.auth.rejection", r.reason);
        if (UNAVAILABLE_REASONS.has(r.reason))
          throw new GatewayError(503, "auth_unavailable", "the token cannot be checked right now", {
            headers: { "retry-after": "5" },
          });
        if (r.reason === "insufficient_scope")
          throw new GatewayError(403, "insufficient_scope", r.message, {
            headers: {
              "www-authenticate": `Bearer realm="${realm}", error="insufficient_scope", scope="${required.join(" ")}"`,
            },
          });
        throw new GatewayError(401, "invalid_token", r.message, {
          headers: {
            "www-authenticate": `Bearer realm="${realm}", error="invalid_token", error_description="${r.reason}"`,
          },
          extra: { reason: r.reason },
        });
      } finally {
        span.end();
      }
      accept(ex, v);
      // Built from the verified claims, re-serialised: never from the raw token segment.
      for (const [claim, name] of forward) {
        const value = claimHeaderValue(v.claims[claim]);
        if (value !== undefined) ex.request.headers[name] = value;
      }
      return next(ex);
    };

    return {
      name: "auth",
      wrap(next) {
        return config.mode === "refreshToken"
          ? (ex) => refreshEndpoint(ex, next)
          : (ex) => protectedResource(ex, next);
      },
    };
  },
};
