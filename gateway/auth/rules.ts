/**
 * Revocation rules (pure): what they are, which token they hit, when they can be forgotten.
 * Subject and client rules are "not before" rules: tokens issued before `notBefore` are rejected.
 * Family and jti rules reject every matching token until they expire.
 */

export const RULE_KINDS = ["subject", "client", "family", "jti"] as const;
export type RuleKind = (typeof RULE_KINDS)[number];

export interface Rule {
  kind: RuleKind;
  id: string;
  /** Milliseconds since the epoch: tokens with iat before this are rejected (subject/client). */
  notBefore?: number;
  /** Milliseconds since the epoch after which the rule can no longer match any valid token. */
  expiresAt: number;
  createdAt: number;
  reason?: string;
}

export function ruleKey(kind: RuleKind, id: string): string {
  return `${kind}:${id}`;
}

/** The identities of a verified token that rules are matched against (iat in seconds). */
export interface TokenIds {
  sub?: string;
  client?: string;
  family?: string;
  jti?: string;
  iat: number;
}

/** The first live rule that rejects the token, else undefined. `now` in milliseconds. */
export function matchingRule(rules: ReadonlyMap<string, Rule>, ids: TokenIds, now: number): Rule | undefined {
  if (rules.size === 0) return undefined;
  const candidates: [RuleKind, string | undefined][] = [
    ["jti", ids.jti],
    ["family", ids.family],
    ["subject", ids.sub],
    ["client", ids.client],
  ];
  for (const [kind, id] of candidates) {
    if (id === undefined) continue;
    const r = rules.get(ruleKey(kind, id));
    if (!r || r.expiresAt <= now) continue;
    if (r.notBefore === undefined || ids.iat * 1000 < r.notBefore) return r;
  }
  return undefined;
}

export interface RuleLifetimes {
  /** Longest lifetime of any token the guard accepts (ms): a not-before rule is useless after notBefore + this. */
  maxTokenLifetime: number;
  clockTolerance: number;
}

/**
 * Builds a rule with its expiry: a not-before rule can only hit tokens issued before notBefore, and
 * none of those lives past notBefore + the lifetime cap; family/jti rules last as long as a token can.
 */
export function makeRule(
  input: { kind: RuleKind; id: string; notBefore?: number; expiresAt?: number; reason?: string },
  life: RuleLifetimes,
  now: number,
): Rule {
  const slack = life.maxTokenLifetime + life.clockTolerance;
  const notBefore =
    input.kind === "subject" || input.kind === "client" ? (input.notBefore ?? now) : input.notBefore;
  const expiresAt = input.expiresAt ?? (notBefore ?? now) + slack;
  return {
    kind: input.kind,
    id: input.id,
    ...(notBefore !== undefined ? { notBefore } : {}),
    expiresAt,
    createdAt: now,
    ...(input.reason ? { reason: input.reason } : {}),
  };
}

/** Merging two rules for the same target keeps the stronger one (latest notBefore, latest expiry). */
export function mergeRule(a: Rule | undefined, b: Rule): Rule {
  if (!a) return b;
  const notBefore =
    a.notBefore === undefined || b.notBefore === undefined ? undefined : Math.max(a.notBefore, b.notBefore);
  return {
    ...b,
    ...(notBefore !== undefined ? { notBefore } : { notBefore: undefined }),
    expiresAt: Math.max(a.expiresAt, b.expiresAt),
  };
}

export function isRule(v: unknown): v is Rule {
  const r = v as Rule;
  return (
    typeof r === "object" &&
    r !== null &&
    (RULE_KINDS as readonly string[]).includes(r.kind) &&
    typeof r.id === "string" &&
    typeof r.expiresAt === "number" &&
    (r.notBefore === undefined || typeof r.notBefore === "number")
  );
}
