import { createHash } from "node:crypto";
import { errors, jwtVerify } from "jose";
import type { AuthGlobalConfig } from "./config.ts";
import type { Introspector } from "./introspection.ts";
import type { KeySource } from "./keys.ts";
import {
  type ClaimPolicy,
  checkClaims,
  checkHeader,
  checkParsed,
  type HeaderPolicy,
  inspectCompact,
  stringClaim,
  TokenRejected,
} from "./policy.ts";
import { makeRule, type RuleLifetimes } from "./rules.ts";
import type { AuthStore } from "./store.ts";

export type TokenKind = "refresh" | "access";

/** A token that passed every check. */
export interface VerifiedToken {
  kind: TokenKind;
  claims: Record<string, unknown>;
  sub: string | undefined;
  clientId: string | undefined;
  tenant: string | undefined;
  family: string | undefined;
  jti: string | undefined;
  /** Seconds. */
  iat: number;
  exp: number;
}

/**
 * Validates refresh and access tokens: structure, header, signature (jose), claims, revocation rules and,
 * for refresh tokens, replay. Every failure is a TokenRejected with a bounded reason; anything else a
 * library throws (jose raises plain TypeErrors on some inputs) becomes "malformed", never a 500.
 */
export class TokenGuard {
  readonly cfg: AuthGlobalConfig;
  readonly keys: KeySource;
  readonly store: AuthStore;
  readonly introspector: Introspector | undefined;
  readonly lifetimes: RuleLifetimes;
  private readonly header: HeaderPolicy;
  private readonly claimPolicy: Record<TokenKind, ClaimPolicy>;
  private readonly tolerance: number;

  constructor(cfg: AuthGlobalConfig, keys: KeySource, store: AuthStore, introspector?: Introspector) {
    this.cfg = cfg;
    this.keys = keys;
    this.store = store;
    this.introspector = introspector;
    this.tolerance = cfg.clockTolerance / 1000;
    this.header = { algorithms: cfg.algorithms, requireKid: cfg.requireKid };
    this.claimPolicy = {
      refresh: {
        clockTolerance: this.tolerance,
        maxLifetime: cfg.refreshTokens.maxLifetime / 1000,
        requireJti: true,
        requiredStrings: cfg.refreshTokens.requireFamily ? [cfg.refreshTokens.familyClaim] : [],
      },
      access: {
        clockTolerance: this.tolerance,
        maxLifetime: cfg.accessTokens.maxLifetime / 1000,
        requireJti: false,
        requiredStrings: [],
      },
    };
    this.lifetimes = {
      maxTokenLifetime: Math.max(cfg.refreshTokens.maxLifetime, cfg.accessTokens.maxLifetime),
      clockTolerance: cfg.clockTolerance,
    };
  }

  /** Signature and claims of a JWT of the given kind, then the revocation rules. */
  async verifyJwt(token: string, kind: TokenKind, now = Date.now()): Promise<VerifiedToken> {
    const texts = inspectCompact(token, this.cfg.maxTokenSize);
    const wantTyp = kind === "refresh" ? this.cfg.refreshTokens.typ : this.cfg.accessTokens.typ;
    let payload: Record<string, unknown>;
    let header: Record<string, unknown>;
    try {
      // jose checks the alg allowlist before the signature, then iss, aud, typ, exp, nbf.
      const r = await jwtVerify(token, this.keys.getKey, {
        issuer: this.cfg.issuer,
        audience: this.cfg.audience,
        algorithms: this.cfg.algorithms,
        clockTolerance: this.tolerance,
        typ: wantTyp,
        requiredClaims: ["exp", "iat"],
        currentDate: new Date(now),
      });
      payload = r.payload as Record<string, unknown>;
      header = r.protectedHeader as Record<string, unknown>;
    } catch (err) {
      throw asRejection(err);
    }
    checkHeader(header, this.header);
    // jose accepts a missing typ when it is not asked for one; it was asked, but be explicit.
    if (typeof header.typ !== "string") throw new TokenRejected("wrong_type", `expected a ${wantTyp} token`);
    checkParsed(texts, header, payload);
    checkClaims(payload, this.claimPolicy[kind], now / 1000);
    const v = this.identify(kind, payload);
    this.checkRules(v, now);
    return v;
  }

  /** An opaque refresh token, checked by RFC 7662 introspection, then the same claim and rule checks. */
  async verifyOpaqueRefresh(token: string, now = Date.now()): Promise<VerifiedToken> {
    if (!this.introspector) throw new TokenRejected("malformed", "the refresh token is not a JWT");
    if (token.length > this.cfg.maxTokenSize || !/^[\x21-\x7e]+$/.test(token))
      throw new TokenRejected("malformed", "the refresh token is malformed");
    const r = await this.introspector.introspect(token, "refresh_token", now);
    if (!r.active) throw new TokenRejected("inactive", "the refresh token is not active");
    const c = r.claims;
    if (c.iss !== undefined && c.iss !== this.cfg.issuer)
      throw new TokenRejected("wrong_issuer", "wrong issuer");
    if (c.token_type !== undefined && c.token_type !== "refresh_token")
      throw new TokenRejected("wrong_type", "not a refresh token");
    // exp and iat are required here too (not-before rules and the lifetime cap need them).
    const claims: Record<string, unknown> = { ...c };
    // Without a jti the token itself is the identity: key replay on its hash, never on the raw string.
    if (claims.jti === undefined) {
      claims.jti = `opaque:${createHash("sha256").update(token).digest("base64url")}`;
    }
    checkClaims(claims, { ...this.claimPolicy.refresh, requiredStrings: [] }, now / 1000);
    const v = this.identify("refresh", claims);
    this.checkRules(v, now);
    return v;
  }

  private identify(kind: TokenKind, claims: Record<string, unknown>): VerifiedToken {
    const names = this.cfg.claims;
    return {
      kind,
      claims,
      sub: stringClaim(claims, names.subject),
      clientId: stringClaim(claims, names.client) ?? stringClaim(claims, "azp"),
      tenant: stringClaim(claims, names.tenant),
      family: stringClaim(claims, this.cfg.refreshTokens.familyClaim),
      jti: stringClaim(claims, "jti"),
      iat: claims.iat as number,
      exp: claims.exp as number,
    };
  }

  private checkRules(v: VerifiedToken, now: number): void {
    const rule = this.store.check(
      { sub: v.sub, client: v.clientId, family: v.family, jti: v.jti, iat: v.iat },
      now,
    );
    if (rule) throw new TokenRejected("revoked", "the token has been revoked");
    const policy =
      v.kind === "refresh" ? this.cfg.onStoreUnavailable.refresh : this.cfg.onStoreUnavailable.access;
    if (policy === "reject" && !this.store.readable)
      throw new TokenRejected("store_unavailable", "revocation rules cannot be read");
  }

  /**
   * Rotation and reuse detection (RFC 9700 §4.14.2): the first use of a jti is recorded until the token
   * expires; a reuse within the grace window is a concurrent refresh, a later one a replay, which
   * revokes the whole family.
   */
  async recordUse(v: VerifiedToken, now = Date.now()): Promise<void> {
    if (!v.jti) return;
    let first: number | null;
    try {
      first = await this.store.firstUse(v.jti, now, v.exp * 1000 - now + this.cfg.clockTolerance);
    } catch (err) {
      if (this.cfg.onStoreUnavailable.refresh === "allow") return;
      throw new TokenRejected("store_unavailable", "the refresh token's use cannot be recorded", {
        cause: err,
      });
    }
    if (first === null || now - first <= this.cfg.refreshTokens.reuseGrace) return;
    const rules = [
      v.family !== undefined
        ? makeRule({ kind: "family", id: v.family, reason: "refresh token replayed" }, this.lifetimes, now)
        : makeRule(
            { kind: "jti", id: v.jti, expiresAt: v.exp * 1000 + this.cfg.clockTolerance, reason: "replayed" },
            this.lifetimes,
            now,
          ),
    ];
    await this.store.add(rules).catch(() => {
      // Applied in memory already; other gateways learn it at their next sync if the publish failed.
    });
    throw new TokenRejected("replayed", "the refresh token was already used");
  }
}

/** Maps whatever jose (or a library below it) throws to a bounded rejection. */
export function asRejection(err: unknown): TokenRejected {
  if (err instanceof TokenRejected) return err;
  if (err instanceof errors.JWTExpired) return new TokenRejected("expired", "the token has expired");
  if (err instanceof errors.JWTClaimValidationFailed) {
    if (err.reason === "missing")
      return new TokenRejected("missing_claim", `the ${err.claim} claim is required`);
    switch (err.claim) {
      case "iss":
        return new TokenRejected("wrong_issuer", "the token has the wrong issuer");
      case "aud":
        return new TokenRejected("wrong_audience", "the token is not for this audience");
      case "typ":
        return new TokenRejected("wrong_type", "the token has the wrong type");
      case "nbf":
        return new TokenRejected("not_yet_valid", "the token is not valid yet");
      case "iat":
        return new TokenRejected("future_iat", "the token's iat is not acceptable");
      default:
        return new TokenRejected("malformed", `the ${err.claim} claim is invalid`);
    }
  }
  if (err instanceof errors.JWSSignatureVerificationFailed)
    return new TokenRejected("bad_signature", "the token signature is invalid");
  if (err instanceof errors.JWKSNoMatchingKey || err instanceof errors.JWKSMultipleMatchingKeys)
    return new TokenRejected("unknown_key", "no known key matches the token");
  if (err instanceof errors.JOSEAlgNotAllowed)
    return new TokenRejected("algorithm_not_allowed", "the token's algorithm is not allowed");
  if (err instanceof errors.JWKSTimeout)
    return new TokenRejected("keys_unavailable", "the issuer's keys are not available");
  return new TokenRejected("malformed", "the token is malformed", { cause: err });
}
