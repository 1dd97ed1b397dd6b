/**
 * Pure token policy: the structural checks jose does not make (canonical base64url, duplicate JSON
 * names, sizes) and the claim checks it leaves to the caller (exp required and finite, lifetime cap,
 * future iat). No I/O here; everything is unit-tested in test/gateway/auth/policy.test.ts.
 */

/** Bounded rejection reasons: they are metric label values. */
export const REJECTION_REASONS = [
  "missing_token",
  "malformed",
  "algorithm_not_allowed",
  "unknown_key",
  "bad_signature",
  "wrong_type",
  "wrong_issuer",
  "wrong_audience",
  "missing_claim",
  "expired",
  "not_yet_valid",
  "future_iat",
  "lifetime_exceeded",
  "revoked",
  "replayed",
  "inactive",
  "insufficient_scope",
  "bad_request",
  "keys_unavailable",
  "store_unavailable",
  "introspection_unavailable",
] as const;
export type RejectionReason = (typeof REJECTION_REASONS)[number];

/** Reasons that are the gateway's (or its dependencies') trouble, not the token's: answered with 503. */
export const UNAVAILABLE_REASONS: ReadonlySet<RejectionReason> = new Set([
  "keys_unavailable",
  "store_unavailable",
  "introspection_unavailable",
]);

export class TokenRejected extends Error {
  override name = "TokenRejected";
  readonly reason: RejectionReason;
  constructor(reason: RejectionReason, description: string, opts: { cause?: unknown } = {}) {
    super(description, opts);
    this.reason = reason;
  }
}

import { isUtf8 } from "node:buffer";

const B64URL = /^[A-Za-z0-9_-]*$/;

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/**
 * True when `s` is the one canonical unpadded base64url spelling of its bytes: only the alphabet, no
 * padding, and the unused low bits of the last character zero (else several strings decode to the same
 * bytes, and a signature could be "changed" without changing what is verified).
 */
export function isCanonicalBase64url(s: string): boolean {
  const rest = s.length % 4;
  if (rest === 1 || !B64URL.test(s)) return false;
  if (rest === 0) return true;
  const last = ALPHABET.indexOf(s[s.length - 1]!);
  return (last & (rest === 2 ? 0x0f : 0x03)) === 0;
}

export interface CompactParts {
  /** The header's and payload's JSON texts, for the duplicate-name checks once jose has parsed them. */
  headerText: string;
  payloadText: string;
}

/**
 * Structural checks on a compact JWS before any crypto: three non-empty canonical base64url segments
 * whose header and payload are UTF-8. jose parses them; see checkParsed for what is checked after.
 */
export function inspectCompact(token: string, maxSize: number): CompactParts {
  if (token.length === 0) throw new TokenRejected("missing_token", "no token");
  if (token.length > maxSize) throw new TokenRejected("malformed", "token too large");
  const parts = token.split(".");
  if (parts.length !== 3) throw new TokenRejected("malformed", "not a compact JWS");
  const [h, p, s] = parts as [string, string, string];
  if (h === "" || p === "" || s === "") throw new TokenRejected("malformed", "empty JWS segment");
  if (!isCanonicalBase64url(h) || !isCanonicalBase64url(p) || !isCanonicalBase64url(s))
    throw new TokenRejected("malformed", "JWS segments must be canonical unpadded base64url");
  return {
    headerText: decodeUtf8(Buffer.from(h, "base64url"), "header"),
    payloadText: decodeUtf8(Buffer.from(p, "base64url"), "payload"),
  };
}

/** After jose parsed (and verified) header and payload: no repeated member names in either text. */
export function checkParsed(
  texts: CompactParts,
  header: Record<string, unknown>,
  payload: Record<string, unknown>,
): void {
  if (hasDuplicateMembers(texts.headerText, header))
    throw new TokenRejected("malformed", "header repeats a member name");
  if (hasDuplicateMembers(texts.payloadText, payload))
    throw new TokenRejected("malformed", "payload repeats a member name");
  // JSON.parse makes "__proto__" an own member; copied later with Object.assign it would set a prototype.
  if (texts.payloadText.includes("__proto__") || texts.payloadText.includes("\\u")) {
    if (hasProtoMember(payload)) throw new TokenRejected("malformed", "payload has a __proto__ member");
  }
}

function hasProtoMember(v: unknown): boolean {
  if (typeof v !== "object" || v === null) return false;
  if (Array.isArray(v)) return v.some(hasProtoMember);
  for (const k of Object.keys(v)) {
    if (k === "__proto__" || hasProtoMember((v as Record<string, unknown>)[k])) return true;
  }
  return false;
}

function decodeUtf8(bytes: Buffer, what: string): string {
  if (!isUtf8(bytes)) throw new TokenRejected("malformed", `${what} is not UTF-8`);
  return bytes.toString("utf8");
}

/**
 * Every JSON string, consumed whole (so the scan never restarts inside one), and whether a colon follows:
 * in valid JSON a string followed by a colon is exactly a member name.
 */
const JSON_STRING = /"(?:[^"\\]|\\.)*"(\s*:)?/g;

function countMembers(v: unknown): number {
  if (typeof v !== "object" || v === null) return 0;
  let n = 0;
  if (Array.isArray(v)) {
    for (const x of v) n += countMembers(x);
    return n;
  }
  for (const k in v) n += 1 + countMembers((v as Record<string, unknown>)[k]);
  return n;
}

/**
 * True when the JSON text repeats a member name within one object. JSON.parse keeps the last one
 * silently; the issuer may have meant the first (RFC 7515 §5.2 says reject). Member names in the text
 * are never fewer than the members JSON.parse kept, and equal only without duplicates.
 */
export function hasDuplicateMembers(text: string, parsed: unknown): boolean {
  let inText = 0;
  JSON_STRING.lastIndex = 0;
  for (let m = JSON_STRING.exec(text); m !== null; m = JSON_STRING.exec(text))
    if (m[1] !== undefined) inText++;
  return inText !== countMembers(parsed);
}

/** Header members that would let a token name its own key: never honoured, so never accepted. */
const KEY_INJECTION_HEADERS = ["jwk", "jku", "x5u", "x5c"];

export interface HeaderPolicy {
  algorithms: readonly string[];
  requireKid: boolean;
}

export function checkHeader(header: Record<string, unknown>, policy: HeaderPolicy): void {
  const alg = header.alg;
  if (typeof alg !== "string") throw new TokenRejected("malformed", "header has no alg");
  if (!policy.algorithms.includes(alg))
    throw new TokenRejected("algorithm_not_allowed", `algorithm ${alg.slice(0, 20)} is not allowed`);
  if (header.kid !== undefined && (typeof header.kid !== "string" || header.kid.length > 256))
    throw new TokenRejected("malformed", "kid must be a short string");
  if (policy.requireKid && typeof header.kid !== "string")
    throw new TokenRejected("malformed", "header has no kid");
  for (const h of KEY_INJECTION_HEADERS)
    if (header[h] !== undefined) throw new TokenRejected("malformed", `header member ${h} is not accepted`);
  if (header.b64 !== undefined) throw new TokenRejected("malformed", "unencoded payloads are not accepted");
}

export interface ClaimPolicy {
  /** Seconds. */
  clockTolerance: number;
  /** Longest allowed exp - iat, seconds. */
  maxLifetime: number;
  requireJti: boolean;
  /** Claim that must be a non-empty string (e.g. the family claim), if any. */
  requiredStrings: readonly string[];
}

const MAX_ID_LENGTH = 512;

function numericDate(payload: Record<string, unknown>, name: string, required: boolean): number | undefined {
  const v = payload[name];
  if (v === undefined) {
    if (required) throw new TokenRejected("missing_claim", `the ${name} claim is required`);
    return undefined;
  }
  // 1e999 parses to Infinity, which jose treats as a number: only finite, non-negative seconds pass.
  if (typeof v !== "number" || !Number.isFinite(v) || v < 0 || v > 253402300799)
    throw new TokenRejected("malformed", `the ${name} claim is not a valid NumericDate`);
  return v;
}

/**
 * Claim checks jose leaves to the caller, after it verified the signature (and iss/aud/typ/exp/nbf):
 * exp and iat required and finite, iat not in the future, exp - iat within the cap, jti/sub shapes.
 * `now` is in seconds.
 */
export function checkClaims(payload: Record<string, unknown>, policy: ClaimPolicy, now: number): void {
  const exp = numericDate(payload, "exp", true)!;
  const iat = numericDate(payload, "iat", true)!;
  const nbf = numericDate(payload, "nbf", false);
  if (exp <= now - policy.clockTolerance) throw new TokenRejected("expired", "the token has expired");
  if (nbf !== undefined && nbf > now + policy.clockTolerance)
    throw new TokenRejected("not_yet_valid", "the token is not valid yet");
  if (iat > now + policy.clockTolerance)
    throw new TokenRejected("future_iat", "the token was issued in the future");
  if (exp <= iat) throw new TokenRejected("malformed", "exp is not after iat");
  if (exp - iat > policy.maxLifetime)
    throw new TokenRejected("lifetime_exceeded", "the token lives longer than allowed");
  if (payload.sub !== undefined && !isShortString(payload.sub))
    throw new TokenRejected("malformed", "sub must be a non-empty string");
  if (payload.jti !== undefined && !isShortString(payload.jti))
    throw new TokenRejected("malformed", "jti must be a non-empty string");
  if (policy.requireJti && payload.jti === undefined)
    throw new TokenRejected("missing_claim", "the jti claim is required");
  for (const name of policy.requiredStrings) {
    if (payload[name] === undefined)
      throw new TokenRejected("missing_claim", `the ${name} claim is required`);
    if (!isShortString(payload[name]))
      throw new TokenRejected("malformed", `${name} must be a non-empty string`);
  }
}

export function isShortString(v: unknown): v is string {
  return typeof v === "string" && v.length > 0 && v.length <= MAX_ID_LENGTH;
}

/** Reads an optional string claim (used for identities): non-strings count as absent. */
export function stringClaim(payload: Record<string, unknown>, name: string): string | undefined {
  const v = payload[name];
  return isShortString(v) ? v : undefined;
}

/** Header-safe rendering of a verified claim: printable ASCII as is, anything else percent-encoded/JSON. */
export function claimHeaderValue(v: unknown): string | undefined {
  if (v === undefined || v === null) return undefined;
  const text = typeof v === "string" ? v : JSON.stringify(v);
  if (text === undefined) return undefined;
  return /^[\x20-\x7e]*$/.test(text) ? text.trim() : encodeURIComponent(text);
}

/** Scope claim as a set (RFC 8693/9068 `scope` is a space-separated string). */
export function scopes(payload: Record<string, unknown>): Set<string> {
  const s = payload.scope;
  if (typeof s === "string") return new Set(s.split(" ").filter(Boolean));
  if (Array.isArray(s)) return new Set(s.filter((x): x is string => typeof x === "string"));
  return new Set();
}
