import { createHmac, timingSafeEqual } from "node:crypto";

/** The signature of a canonical path + query (without `s`): HMAC-SHA256, base64url, first 24 bytes. */
export function signPath(key: string, canonicalPathAndQuery: string): string {
  return createHmac("sha256", key)
    .update(canonicalPathAndQuery)
    .digest()
    .subarray(0, 24)
    .toString("base64url");
}

/** Checks `signature` against every key (the first signs; the others still verify during rotation). */
export function verifySignature(
  keys: readonly string[],
  canonicalPathAndQuery: string,
  signature: string,
): boolean {
  const given = Buffer.from(signature);
  return keys.some((k) => {
    const want = Buffer.from(signPath(k, canonicalPathAndQuery));
    return want.length === given.length && timingSafeEqual(want, given);
  });
}

/** Appends `s=` to a canonical URL (path + canonical query without `s`). */
export function signedUrl(key: string, canonicalPathAndQuery: string): string {
  const s = signPath(key, canonicalPathAndQuery);
  return `${canonicalPathAndQuery}${canonicalPathAndQuery.includes("?") ? "&" : "?"}s=${s}`;
}
