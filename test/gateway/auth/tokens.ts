/** Mints example tokens with the committed example keys (config/examples/keys/private.jwks.json). */

import type { webcrypto } from "node:crypto";
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { importJWK, type JWK, type JWTPayload, SignJWT } from "jose";

type CryptoKey = webcrypto.CryptoKey;

export const ISSUER = "https://auth.example.test";
export const AUDIENCE = "edgeway-demo";
export const KEYS_DIR = new URL("../../../config/examples/keys/", import.meta.url);
export const JWKS_FILE = new URL("jwks.json", KEYS_DIR).pathname;
const privateJwks = JSON.parse(readFileSync(new URL("private.jwks.json", KEYS_DIR), "utf8")) as {
  keys: JWK[];
};

export type Alg = "ES256" | "RS256" | "EdDSA";
const keyCache = new Map<string, CryptoKey>();

export function privateJwk(alg: Alg): JWK {
  const k = privateJwks.keys.find((x) => x.alg === alg);
  if (!k) throw new Error(`no example key for ${alg}`);
  return k;
}

export async function signingKey(jwk: JWK): Promise<CryptoKey> {
  const id = `${jwk.kid}:${jwk.alg}:${jwk.d}`;
  let k = keyCache.get(id);
  if (!k) {
    k = (await importJWK(jwk, jwk.alg)) as CryptoKey;
    keyCache.set(id, k);
  }
  return k;
}

export interface MintOptions {
  alg?: Alg;
  typ?: string | null;
  kid?: string | null;
  header?: Record<string, unknown>;
  /** Claims merged over the defaults (undefined removes a default). */
  claims?: Record<string, unknown>;
  key?: JWK;
  now?: number;
}

const sec = () => Math.floor(Date.now() / 1000);

function baseClaims(kind: "refresh" | "access", now: number): JWTPayload {
  return {
    iss: ISSUER,
    aud: AUDIENCE,
    sub: "u123",
    client_id: "mobile-ios",
    iat: now,
    exp: now + (kind === "refresh" ? 7 * 86400 : 600),
    jti: randomUUID(),
    sid: `sid-${randomUUID()}`,
    ...(kind === "access" ? { scope: "read write", tenant: "t1" } : {}),
  };
}

export async function mint(kind: "refresh" | "access", o: MintOptions = {}): Promise<string> {
  const jwk = o.key ?? privateJwk(o.alg ?? "ES256");
  const claims: Record<string, unknown> = { ...baseClaims(kind, o.now ?? sec()), ...o.claims };
  for (const k of Object.keys(claims)) if (claims[k] === undefined) delete claims[k];
  const header: Record<string, unknown> = { alg: jwk.alg };
  if (o.typ !== null) header.typ = o.typ ?? (kind === "refresh" ? "refresh+jwt" : "at+jwt");
  if (o.kid !== null) header.kid = o.kid ?? jwk.kid;
  Object.assign(header, o.header);
  return new SignJWT(claims as JWTPayload)
    .setProtectedHeader(header as { alg: string })
    .sign(await signingKey(jwk));
}

/** Signs arbitrary header/payload JSON text (for duplicate names and other hand-made payloads). */
export async function signRaw(headerJson: string, payloadJson: string, alg: Alg = "ES256"): Promise<string> {
  const jwk = privateJwk(alg);
  const h = Buffer.from(headerJson).toString("base64url");
  const p = Buffer.from(payloadJson).toString("base64url");
  const input = Buffer.from(`${h}.${p}`);
  const key = await signingKey(jwk);
  const params =
    alg === "ES256"
      ? { name: "ECDSA", hash: "SHA-256" }
      : alg === "RS256"
        ? { name: "RSASSA-PKCS1-v1_5" }
        : { name: "Ed25519" };
  const sig = Buffer.from(await crypto.subtle.sign(params, key, input)).toString("base64url");
  return `${h}.${p}.${sig}`;
}

export const form = (fields: Record<string, string>) => new URLSearchParams(fields).toString();
