import { z } from "zod";
import { byteSize, duration } from "../../lib/config/index.ts";
import { redisSection } from "../../lib/redis/schema.ts";

/** Signature algorithms the guard can accept; symmetric ones are excluded on purpose (the gateway holds no secrets). */
export const ASYMMETRIC_ALGORITHMS = [
  "ES256",
  "ES384",
  "ES512",
  "RS256",
  "RS384",
  "RS512",
  "PS256",
  "PS384",
  "PS512",
  "EdDSA",
  "Ed25519",
] as const;

const FIELD_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const headerName = z
  .string()
  .regex(FIELD_NAME, "not a valid header name")
  .transform((s) => s.toLowerCase())
  .refine(
    (s) => !["host", "content-length", "transfer-encoding", "connection", "authorization"].includes(s),
    "framing, Host and Authorization headers cannot carry claims",
  );

const jwksSchema = z
  .strictObject({
    /** Remote JWKS (fetched with jose's createRemoteJWKSet). */
    url: z.url({ protocol: /^https?$/ }).optional(),
    /** Local JWKS file; re-read when it changes (keys roll without a restart). */
    file: z.string().min(1).optional(),
    /** Background refresh of the key set; the last good set is kept when a refresh fails. */
    refreshInterval: duration({ min: 100 }).default(300_000),
    /** Minimum time between two refetches triggered by an unknown `kid` (or a failed load). */
    cooldown: duration({ min: 100 }).default(30_000),
    timeout: duration({ min: 100 }).default(5000),
  })
  .refine(
    (j) => (j.url === undefined) !== (j.file === undefined),
    "set exactly one of jwks.url or jwks.file",
  );

const introspectionSchema = z.strictObject({
  /** RFC 7662 endpoint of the auth service, used for refresh tokens that are not JWTs. */
  url: z.url({ protocol: /^https?$/ }),
  clientId: z.string().min(1),
  clientSecret: z.string().min(1),
  /** Longest time an active answer is cached (never past the token's exp). */
  cacheTtl: duration().default(60_000),
  /** How long an inactive answer is cached. */
  negativeCacheTtl: duration().default(5000),
  timeout: duration({ min: 50 }).default(2000),
  cacheSize: z.number().int().min(0).default(100_000),
});

/** Shared replay and revocation state: the connection (lib/redis) plus the store's own settings. */
const redisSchema = redisSection(
  {
    /**
     * Prefix of every key and of the pub/sub channel (several gateways can share one Redis). Without
     * braces: the rule keys carry their own Cluster hash tag, `<prefix>{rules}`.
     */
    keyPrefix: z
      .string()
      .regex(/^[^{}]*$/, "no braces: the rule keys carry their own Cluster hash tag")
      .default("edgeway:auth:"),
    commandTimeout: duration({ min: 10 }).default(200),
    /** Full re-read of the rules (pub/sub catch-up after a disconnect) and cleanup of expired rules. */
    syncInterval: duration({ min: 100 }).default(30_000),
    /** The in-memory rules count as unreadable once the last successful sync is older than this. */
    staleAfter: duration({ min: 100 }).default(90_000),
  },
  { target: "required" },
);

export const authGlobalSchema = z.strictObject({
  issuer: z.string().min(1),
  audience: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]),
  algorithms: z.array(z.enum(ASYMMETRIC_ALGORITHMS)).min(1).default(["ES256", "RS256", "EdDSA"]),
  jwks: jwksSchema,
  /** Tokens without a `kid` are rejected (several keys per algorithm would make the choice ambiguous). */
  requireKid: z.boolean().default(true),
  clockTolerance: duration({ max: 300_000 }).default(30_000),
  /** Longest accepted compact token, in bytes. */
  maxTokenSize: byteSize().prefault("8KiB"),
  refreshTokens: z
    .strictObject({
      typ: z.string().default("refresh+jwt"),
      /** Reject when exp - iat exceeds this. */
      maxLifetime: duration({ min: 1000 }).default(30 * 86_400_000),
      /** A jti seen again within this window is a concurrent refresh, after it a replay. */
      reuseGrace: duration().default(10_000),
      /** Claim naming the token family revoked on replay. */
      familyClaim: z.string().min(1).default("sid"),
      requireFamily: z.boolean().default(true),
      /** Largest token-endpoint body read (form-encoded). */
      maxBodySize: byteSize().prefault("16KiB"),
      introspection: introspectionSchema.optional(),
    })
    .prefault({}),
  accessTokens: z
    .strictObject({
      typ: z.string().default("at+jwt"),
      maxLifetime: duration({ min: 1000 }).default(86_400_000),
      realm: z
        .string()
        .regex(/^[\x20-\x21\x23-\x5b\x5d-\x7e]*$/)
        .default("edgeway"),
    })
    .prefault({}),
  /** Claim names for the identities revocation rules and the cache scope use. */
  claims: z
    .strictObject({
      subject: z.string().default("sub"),
      client: z.string().default("client_id"),
      tenant: z.string().default("tenant"),
    })
    .prefault({}),
  /** Shared replay and revocation state; without it both live in this process's memory. */
  redis: redisSchema.optional(),
  /**
   * When the rules cannot be read (Redis down past `staleAfter` or never loaded) or a jti cannot be
   * recorded: "reject" (fail closed) or "allow" (enforce the rules held in memory).
   */
  onStoreUnavailable: z
    .strictObject({
      refresh: z.enum(["reject", "allow"]).default("reject"),
      access: z.enum(["reject", "allow"]).default("allow"),
    })
    .prefault({}),
});
export type AuthGlobalConfig = z.output<typeof authGlobalSchema>;

export const authRouteSchema = z.strictObject({
  /** `refreshToken`: an OAuth token endpoint; `accessToken`: a resource needing a bearer token. */
  mode: z.enum(["refreshToken", "accessToken"]),
  /** Access-token routes: claims forwarded upstream as headers, e.g. `{ sub: x-auth-subject }`. */
  forwardClaims: z.record(z.string().min(1), headerName).default({}),
  /** More headers always removed from client requests (the forwardClaims headers always are). */
  stripHeaders: z.array(headerName).default([]),
  /** Access-token routes: required scopes (space-separated `scope` claim), all of them. */
  requiredScopes: z.array(z.string().min(1)).default([]),
});
export type AuthRouteConfig = z.output<typeof authRouteSchema>;
