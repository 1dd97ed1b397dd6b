import { createHash } from "node:crypto";
import type { AuthGlobalConfig } from "./config.ts";
import { TokenRejected } from "./policy.ts";

type IntrospectionConfig = NonNullable<AuthGlobalConfig["refreshTokens"]["introspection"]>;

/** The parts of an RFC 7662 answer the guard uses. */
export interface IntrospectionResult {
  active: boolean;
  claims: Record<string, unknown>;
}

/**
 * RFC 7662 token introspection for opaque refresh tokens, with a cache keyed by the token's hash.
 * An active answer is cached for at most `cacheTtl` and never past the token's exp.
 */
export class Introspector {
  private readonly cfg: IntrospectionConfig;
  private readonly cache = new Map<string, { result: IntrospectionResult; until: number }>();
  private readonly auth: string;
  /** Upstream calls made (tests check the cache with it). */
  calls = 0;

  constructor(cfg: IntrospectionConfig) {
    this.cfg = cfg;
    this.auth = `Basic ${Buffer.from(`${encodeURIComponent(cfg.clientId)}:${encodeURIComponent(cfg.clientSecret)}`).toString("base64")}`;
  }

  async introspect(token: string, hint: string, now = Date.now()): Promise<IntrospectionResult> {
    const key = createHash("sha256").update(token).digest("base64url");
    const hit = this.cache.get(key);
    if (hit && hit.until > now) return hit.result;
    if (hit) this.cache.delete(key);
    const result = await this.call(token, hint);
    const exp = typeof result.claims.exp === "number" ? result.claims.exp * 1000 : undefined;
    const ttl = result.active
      ? Math.min(this.cfg.cacheTtl, exp === undefined ? 0 : exp - now)
      : this.cfg.negativeCacheTtl;
    if (ttl > 0 && this.cfg.cacheSize > 0) {
      if (this.cache.size >= this.cfg.cacheSize) {
        const oldest = this.cache.keys().next().value;
        if (oldest !== undefined) this.cache.delete(oldest);
      }
      this.cache.set(key, { result, until: now + ttl });
    }
    return result;
  }

  private async call(token: string, hint: string): Promise<IntrospectionResult> {
    this.calls++;
    let res: Response;
    try {
      res = await fetch(this.cfg.url, {
        method: "POST",
        headers: {
          authorization: this.auth,
          "content-type": "application/x-www-form-urlencoded",
          accept: "application/json",
        },
        body: new URLSearchParams({ token, token_type_hint: hint }).toString(),
        signal: AbortSignal.timeout(this.cfg.timeout),
        redirect: "error",
      });
    } catch (err) {
      throw new TokenRejected("introspection_unavailable", "the token could not be checked", { cause: err });
    }
    if (res.status !== 200) {
      await res.body?.cancel();
      throw new TokenRejected("introspection_unavailable", "the token could not be checked");
    }
    let body: unknown;
    try {
      body = await res.json();
    } catch (err) {
      throw new TokenRejected("introspection_unavailable", "the token could not be checked", { cause: err });
    }
    if (typeof body !== "object" || body === null || Array.isArray(body))
      throw new TokenRejected("introspection_unavailable", "the introspection answer is not an object");
    const claims = body as Record<string, unknown>;
    return { active: claims.active === true, claims };
  }

  close(): void {
    this.cache.clear();
  }
}
