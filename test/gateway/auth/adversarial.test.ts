/**
 * Adversarial suite: tokens across algorithms, claims, headers, encodings, sizes and clock edges,
 * through a real gateway. Each case states the status and the bounded rejection reason it must get.
 */
import { gzipSync } from "node:zlib";
import { exportJWK, generateKeyPair, SignJWT } from "jose";
import t from "tap";
import { type AuthHarness, settle, startAuthHarness } from "./harness.ts";
import { AUDIENCE, form, ISSUER, mint, privateJwk, signRaw } from "./tokens.ts";

const now = () => Math.floor(Date.now() / 1000);
let h: AuthHarness;

t.before(async () => {
  h = await startAuthHarness();
});
t.teardown(() => h.close());

interface Case {
  name: string;
  token: () => Promise<string>;
  /** Expected reason; undefined = accepted. */
  reason?: string;
  status?: number;
}

const b64 = (s: string) => Buffer.from(s).toString("base64url");
const header = (o: Record<string, unknown>) => b64(JSON.stringify(o));
const es = privateJwk("ES256");

const accessCases: Case[] = [
  { name: "ES256 access token", token: () => mint("access", { alg: "ES256" }) },
  { name: "RS256 access token", token: () => mint("access", { alg: "RS256" }) },
  { name: "EdDSA access token", token: () => mint("access", { alg: "EdDSA" }) },
  {
    name: "expired beyond the tolerance",
    token: () => mint("access", { claims: { exp: now() - 31, iat: now() - 600 } }),
    reason: "expired",
  },
  {
    name: "expired within the tolerance",
    token: () => mint("access", { claims: { exp: now() - 20, iat: now() - 600 } }),
  },
  { name: "no exp", token: () => mint("access", { claims: { exp: undefined } }), reason: "missing_claim" },
  { name: "no iat", token: () => mint("access", { claims: { iat: undefined } }), reason: "missing_claim" },
  {
    name: "exp of 1e999 (Infinity after JSON.parse)",
    token: () =>
      signRaw(
        JSON.stringify({ alg: "ES256", typ: "at+jwt", kid: es.kid }),
        `{"iss":"${ISSUER}","aud":"${AUDIENCE}","sub":"u1","iat":${now()},"exp":1e999}`,
      ),
    reason: "malformed",
  },
  {
    name: "exp as a string",
    token: () => mint("access", { claims: { exp: String(now() + 60) } }),
    reason: "malformed",
  },
  { name: "negative exp", token: () => mint("access", { claims: { exp: -1 } }), reason: "expired" },
  {
    name: "iat far in the future",
    token: () => mint("access", { claims: { iat: now() + 3600, exp: now() + 3700 } }),
    reason: "future_iat",
  },
  {
    name: "iat slightly in the future (within tolerance)",
    token: () => mint("access", { claims: { iat: now() + 20, exp: now() + 600 } }),
  },
  {
    name: "nbf in the future",
    token: () => mint("access", { claims: { nbf: now() + 120 } }),
    reason: "not_yet_valid",
  },
  {
    name: "wrong issuer",
    token: () => mint("access", { claims: { iss: "https://evil.example" } }),
    reason: "wrong_issuer",
  },
  {
    name: "issuer with trailing slash",
    token: () => mint("access", { claims: { iss: `${ISSUER}/` } }),
    reason: "wrong_issuer",
  },
  {
    name: "wrong audience",
    token: () => mint("access", { claims: { aud: "other-api" } }),
    reason: "wrong_audience",
  },
  {
    name: "audience array containing ours",
    token: () => mint("access", { claims: { aud: ["x", AUDIENCE] } }),
  },
  {
    name: "no audience",
    token: () => mint("access", { claims: { aud: undefined } }),
    reason: "missing_claim",
  },
  { name: "refresh token presented as access token", token: () => mint("refresh"), reason: "wrong_type" },
  { name: "no typ", token: () => mint("access", { typ: null }), reason: "wrong_type" },
  { name: "typ JWT", token: () => mint("access", { typ: "JWT" }), reason: "wrong_type" },
  {
    name: "typ application/at+jwt (RFC 9068 allows the prefix)",
    token: () => mint("access", { typ: "application/at+jwt" }),
  },
  {
    name: "alg none",
    token: async () =>
      `${header({ alg: "none", typ: "at+jwt", kid: es.kid })}.${b64(JSON.stringify({ iss: ISSUER, aud: AUDIENCE, iat: now(), exp: now() + 60 }))}.`,
    reason: "malformed",
  },
  {
    name: "alg none with a fake signature",
    token: async () =>
      `${header({ alg: "none", typ: "at+jwt", kid: es.kid })}.${b64(JSON.stringify({ iss: ISSUER, aud: AUDIENCE, iat: now(), exp: now() + 60 }))}.${b64("x")}`,
    reason: "algorithm_not_allowed",
  },
  {
    name: "HS256 signed with the public key as the secret (key confusion)",
    token: async () => {
      const secret = new TextEncoder().encode(JSON.stringify({ kty: "EC", x: es.x, y: es.y, crv: es.crv }));
      return new SignJWT({ iss: ISSUER, aud: AUDIENCE, iat: now(), exp: now() + 60 })
        .setProtectedHeader({ alg: "HS256", typ: "at+jwt", kid: es.kid! })
        .sign(secret);
    },
    reason: "algorithm_not_allowed",
  },
  {
    name: "ES256 kid on an RS256-signed token",
    token: () =>
      mint("access", { alg: "RS256", kid: es.kid!, header: { alg: "ES256" } }).catch(() => "x.y.z"),
    reason: "malformed",
  },
  {
    name: "RS256 header pointing at the ES256 key",
    token: () => mint("access", { alg: "RS256", kid: es.kid! }),
    reason: "unknown_key",
  },
  {
    name: "payload tampered after signing",
    token: async () => {
      const [hh, , s] = (await mint("access")).split(".");
      return `${hh}.${b64(JSON.stringify({ iss: ISSUER, aud: AUDIENCE, sub: "admin", iat: now(), exp: now() + 600 }))}.${s}`;
    },
    reason: "bad_signature",
  },
  {
    name: "signed by a different key under a known kid",
    token: async () => {
      const { privateKey } = await generateKeyPair("ES256", { extractable: true });
      const jwk = { ...(await exportJWK(privateKey)), kid: es.kid, alg: "ES256" };
      return mint("access", { key: jwk });
    },
    reason: "bad_signature",
  },
  { name: "unknown kid", token: () => mint("access", { kid: "no-such-kid" }), reason: "unknown_key" },
  { name: "no kid", token: () => mint("access", { kid: null }), reason: "malformed" },
  { name: "numeric kid", token: () => mint("access", { header: { kid: 7 } }), reason: "unknown_key" },
  {
    name: "duplicate claim names (last one wins in JSON.parse)",
    token: () =>
      signRaw(
        JSON.stringify({ alg: "ES256", typ: "at+jwt", kid: es.kid }),
        `{"iss":"${ISSUER}","aud":"${AUDIENCE}","sub":"u1","sub":"admin","iat":${now()},"exp":${now() + 60}}`,
      ),
    reason: "malformed",
  },
  {
    name: "duplicate header names",
    token: () =>
      signRaw(
        `{"alg":"ES256","typ":"refresh+jwt","typ":"at+jwt","kid":"${es.kid}"}`,
        JSON.stringify({ iss: ISSUER, aud: AUDIENCE, sub: "u1", iat: now(), exp: now() + 60 }),
      ),
    reason: "malformed",
  },
  {
    name: "signature with different trailing bits (same bytes, different string)",
    token: async () => {
      const tok = await mint("access", { alg: "EdDSA" });
      const last = tok.at(-1)!;
      const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
      // Ed25519 signature is 64 bytes: the last char carries 2 significant bits, 4 padding bits.
      const i = alphabet.indexOf(last);
      const twin = alphabet[(i & ~0xf) | ((i + 1) & 0xf)]!;
      return tok.slice(0, -1) + twin;
    },
    reason: "malformed",
  },
  { name: "padded base64url", token: async () => `${await mint("access")}==`, reason: "malformed" },
  {
    name: "standard base64 alphabet in the payload",
    token: async () => {
      const [hh, p, s] = (await mint("access")).split(".");
      return `${hh}.+${p!.slice(1).replaceAll("-", "+").replaceAll("_", "/")}.${s}`;
    },
    reason: "malformed",
  },
  { name: "five segments (JWE shape)", token: async () => "a.b.c.d.e", reason: "malformed" },
  { name: "two segments", token: async () => "eyJhbGciOiJFUzI1NiJ9.e30", reason: "malformed" },
  {
    name: "oversized token",
    token: () => mint("access", { claims: { pad: "x".repeat(9000) } }),
    reason: "malformed",
  },
  {
    name: "payload is a JSON array",
    token: () => signRaw(JSON.stringify({ alg: "ES256", typ: "at+jwt", kid: es.kid }), "[1,2]"),
    reason: "malformed",
  },
  {
    name: "payload is not UTF-8",
    token: async () => {
      const hh = header({ alg: "ES256", typ: "at+jwt", kid: es.kid });
      return `${hh}.${Buffer.from([0x7b, 0xff, 0xfe, 0x7d]).toString("base64url")}.${b64("sig")}`;
    },
    reason: "malformed",
  },
  {
    name: "embedded jwk header (key injection)",
    token: () => mint("access", { header: { jwk: { kty: "EC" } } }),
    reason: "malformed",
  },
  {
    name: "jku header",
    token: () => mint("access", { header: { jku: "https://evil.example/jwks" } }),
    reason: "malformed",
  },
  {
    name: "unknown critical header",
    token: () =>
      signRaw(
        JSON.stringify({ alg: "ES256", typ: "at+jwt", kid: es.kid, crit: ["x-evil"], "x-evil": 1 }),
        JSON.stringify({ iss: ISSUER, aud: AUDIENCE, sub: "u1", iat: now(), exp: now() + 60 }),
      ),
    reason: "malformed",
  },
  {
    name: "lifetime above the access cap",
    token: () => mint("access", { claims: { iat: now(), exp: now() + 7200 } }),
    reason: "lifetime_exceeded",
  },
  {
    name: "exp before iat",
    token: () => mint("access", { claims: { iat: now(), exp: now() - 1 } }),
    reason: "malformed",
  },
  {
    name: "sub that is not a string",
    token: () => mint("access", { claims: { sub: 42 } }),
    reason: "malformed",
  },
];

t.test("access tokens", async (t) => {
  t.ok(accessCases.length >= 40);
  for (const c of accessCases) {
    const token = await c.token();
    const res = await h.api(token);
    await res.arrayBuffer();
    await settle();
    if (c.reason === undefined) {
      t.equal(res.status, 200, c.name);
    } else {
      t.equal(res.status, c.status ?? 401, `${c.name}: status`);
      t.equal(h.reasonOf(res), c.reason, `${c.name}: reason`);
      t.match(
        res.headers.get("www-authenticate") ?? "",
        /^Bearer realm="edgeway", error="invalid_token"/,
        `${c.name}: challenge`,
      );
      t.equal(res.headers.get("content-type"), "application/problem+json", `${c.name}: problem body`);
    }
  }
});

t.test("missing and malformed Authorization headers", async (t) => {
  const missing = await h.api(undefined);
  t.equal(missing.status, 401);
  t.equal(missing.headers.get("www-authenticate"), 'Bearer realm="edgeway"');
  const basic = await fetch(`${h.gw.url}/api/x`, { headers: { authorization: "Basic dTpw" } });
  t.equal(basic.status, 401);
  const empty = await fetch(`${h.gw.url}/api/x`, { headers: { authorization: "Bearer " } });
  t.equal(empty.status, 401);
  t.match(empty.headers.get("www-authenticate"), /error="invalid_token"/);
  const twoTokens = await fetch(`${h.gw.url}/api/x`, { headers: { authorization: `Bearer a.b.c d.e.f` } });
  t.equal(twoTokens.status, 401);
  const seenBefore = h.seen.length;
  await Promise.all([missing.text(), basic.text(), empty.text(), twoTokens.text()]);
  t.equal(h.seen.length, seenBefore, "nothing reached the upstream");
});

t.test("claims are forwarded from the verified token; client copies are stripped", async (t) => {
  const token = await mint("access", { claims: { sub: "u-ok", scope: "read" } });
  const res = await h.api(token, { "x-auth-subject": "admin", "x-auth-client": "evil", "x-auth-admin": "1" });
  t.equal(res.status, 200);
  await res.text();
  const got = h.seen.at(-1)!;
  t.equal(got.headers["x-auth-subject"], "u-ok");
  t.equal(got.headers["x-auth-client"], "mobile-ios");
  t.equal(got.headers["x-auth-scope"], "read");
  t.equal(got.headers["x-auth-admin"], undefined);

  // A token without the claim: the client's header must still not get through.
  const noSub = await mint("access", { claims: { sub: undefined } });
  const r2 = await h.api(noSub, { "x-auth-subject": "admin" });
  t.equal(r2.status, 200);
  await r2.text();
  t.equal(h.seen.at(-1)!.headers["x-auth-subject"], undefined);

  // Rejected requests strip too (nothing forwarded at all), and CR/LF in a claim cannot split headers.
  const crlf = await mint("access", { claims: { sub: "u1\r\nx-injected: 1" } });
  const r3 = await h.api(crlf);
  await r3.text();
  t.equal(r3.status, 200);
  t.equal(h.seen.at(-1)!.headers["x-injected"], undefined);
  t.equal(h.seen.at(-1)!.headers["x-auth-subject"], encodeURIComponent("u1\r\nx-injected: 1"));
});

t.test("refresh-token endpoint", async (t) => {
  t.test("a valid refresh token is forwarded byte for byte", async (t) => {
    for (const alg of ["ES256", "RS256", "EdDSA"] as const) {
      const token = await mint("refresh", { alg });
      const body = `grant_type=refresh_token&refresh_token=${token}&scope=a%20b+c&client_id=mobile-ios`;
      const res = await h.refresh(body);
      t.equal(res.status, 200, alg);
      await res.text();
      const got = h.seen.at(-1)!;
      t.equal(got.body.toString("latin1"), body, `${alg}: same bytes upstream`);
      t.equal(got.headers["content-length"], String(Buffer.byteLength(body)));
    }
  });

  const rejectCases: [string, () => Promise<string>, string][] = [
    [
      "expired refresh token",
      () => mint("refresh", { claims: { iat: now() - 86400, exp: now() - 60 } }),
      "expired",
    ],
    ["refresh token without exp", () => mint("refresh", { claims: { exp: undefined } }), "missing_claim"],
    [
      "refresh token living 31 days",
      () => mint("refresh", { claims: { iat: now(), exp: now() + 31 * 86400 } }),
      "lifetime_exceeded",
    ],
    ["refresh token without jti", () => mint("refresh", { claims: { jti: undefined } }), "missing_claim"],
    ["refresh token without sid", () => mint("refresh", { claims: { sid: undefined } }), "missing_claim"],
    ["access token at the token endpoint", () => mint("access"), "wrong_type"],
    [
      "refresh token from the future",
      () => mint("refresh", { claims: { iat: now() + 600, exp: now() + 7200 } }),
      "future_iat",
    ],
    ["opaque token without introspection", async () => "opaque-token-value", "malformed"],
  ];
  t.test("rejections answer 400 invalid_grant with no-store and never reach the upstream", async (t) => {
    for (const [name, make, reason] of rejectCases) {
      const before = h.seen.length;
      const res = await h.refresh(form({ grant_type: "refresh_token", refresh_token: await make() }));
      const body = (await res.json()) as { error: string; error_description: string };
      await settle();
      t.equal(res.status, 400, name);
      t.equal(body.error, "invalid_grant", name);
      t.type(body.error_description, "string");
      t.equal(res.headers.get("cache-control"), "no-store", name);
      t.equal(res.headers.get("content-type"), "application/json", name);
      t.equal(h.reasonOf(res), reason, `${name}: reason`);
      t.equal(h.seen.length, before, `${name}: upstream not called`);
    }
  });

  t.test("request smuggling shapes are refused", async (t) => {
    const good = await mint("refresh");
    const bad = "not-a-token";
    const before = h.seen.length;
    const dup = await h.refresh(`grant_type=refresh_token&refresh_token=${good}&refresh_token=${bad}`);
    t.equal(dup.status, 400);
    t.equal(((await dup.json()) as { error: string }).error, "invalid_request");
    const q = await fetch(`${h.gw.url}/oauth/token?refresh_token=${bad}`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: form({ grant_type: "refresh_token", refresh_token: good }),
    });
    t.equal(q.status, 400);
    await q.text();
    const json = await h.refresh(JSON.stringify({ grant_type: "refresh_token", refresh_token: bad }), {
      "content-type": "application/json",
    });
    t.equal(json.status, 400);
    await json.text();
    const big = await h.refresh(`grant_type=refresh_token&refresh_token=${good}&pad=${"x".repeat(20_000)}`);
    t.equal(big.status, 413);
    await big.text();
    const missing = await h.refresh("grant_type=refresh_token");
    t.equal(missing.status, 400);
    t.equal(((await missing.json()) as { error: string }).error, "invalid_request");
    const rtOtherGrant = await h.refresh(`grant_type=authorization_code&code=x&refresh_token=${bad}`);
    t.equal(rtOtherGrant.status, 400);
    await rtOtherGrant.text();
    const gz = await h.refresh(gzipSync(form({ grant_type: "refresh_token", refresh_token: bad })), {
      "content-encoding": "gzip",
    });
    t.equal(gz.status, 400, "compressed bodies are refused");
    await gz.text();
    const utf16 = await h.refresh(
      Buffer.from(form({ grant_type: "refresh_token", refresh_token: bad }), "utf16le"),
      {
        "content-type": "application/x-www-form-urlencoded; charset=utf-16le",
      },
    );
    t.equal(utf16.status, 400, "other charsets are refused");
    await utf16.text();
    const qGrant = await fetch(`${h.gw.url}/oauth/token?grant_type=refresh_token`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: form({ refresh_token: bad }),
    });
    t.equal(qGrant.status, 400, "grant_type in the query");
    await qGrant.text();
    const put = await fetch(`${h.gw.url}/oauth/token`, {
      method: "PUT",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: form({ grant_type: "refresh_token", refresh_token: bad }),
    });
    t.equal(put.status, 400, "a body is checked whatever the method");
    await put.text();
    t.equal(h.seen.length, before, "none reached the upstream");
    // Other grants pass through untouched.
    const code = await h.refresh("grant_type=authorization_code&code=abc");
    t.equal(code.status, 200);
    await code.text();
    t.equal(h.seen.at(-1)!.body.toString(), "grant_type=authorization_code&code=abc");
  });

  t.test("chunked body is read and forwarded byte for byte", async (t) => {
    const token = await mint("refresh");
    const body = form({ grant_type: "refresh_token", refresh_token: token });
    const stream = new ReadableStream({
      start(c) {
        const bytes = new TextEncoder().encode(body);
        c.enqueue(bytes.slice(0, 10));
        c.enqueue(bytes.slice(10));
        c.close();
      },
    });
    const res = await fetch(`${h.gw.url}/oauth/token`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: stream,
      duplex: "half",
    } as RequestInit);
    t.equal(res.status, 200);
    await res.text();
    t.equal(h.seen.at(-1)!.body.toString(), body);
  });
});

t.test("rotation: reuse inside the grace window passes, after it revokes the family", async (t) => {
  const sid = "sid-family-1";
  const first = await mint("refresh", { claims: { sid } });
  const sibling = await mint("refresh", { claims: { sid } });
  const access = await mint("access", { claims: { sid } });
  const a = await h.refresh(form({ grant_type: "refresh_token", refresh_token: first }));
  const b = await h.refresh(form({ grant_type: "refresh_token", refresh_token: first }));
  t.equal(a.status, 200, "first use");
  t.equal(b.status, 200, "concurrent retry inside the grace window");
  await Promise.all([a.text(), b.text()]);
  await new Promise((r) => setTimeout(r, 1100));
  const replay = await h.refresh(form({ grant_type: "refresh_token", refresh_token: first }));
  t.equal(replay.status, 400);
  await replay.text();
  await settle();
  t.equal(h.reasonOf(replay), "replayed");
  const sib = await h.refresh(form({ grant_type: "refresh_token", refresh_token: sibling }));
  t.equal(sib.status, 400, "the family's other refresh tokens are revoked");
  await sib.text();
  await settle();
  t.equal(h.reasonOf(sib), "revoked");
  const acc = await h.api(access);
  t.equal(acc.status, 401, "access tokens of the family too");
  await acc.text();
  // Replay keys on jti, not on the token string: a re-signed token with the same jti is the same token.
  const jti = "jti-fixed-1";
  const one = await mint("refresh", { claims: { jti }, alg: "ES256" });
  const two = await mint("refresh", { claims: { jti }, alg: "RS256" });
  t.equal((await h.refresh(form({ grant_type: "refresh_token", refresh_token: one }))).status, 200);
  await new Promise((r) => setTimeout(r, 1100));
  const again = await h.refresh(form({ grant_type: "refresh_token", refresh_token: two }));
  t.equal(again.status, 400);
  await again.text();
});

t.test("revocation rules apply to both guards", async (t) => {
  const before = await mint("refresh", { claims: { sub: "u-rev" } });
  const beforeAccess = await mint("access", { claims: { sub: "u-rev" } });
  const r = await h.admin("/admin/auth/revoke", { subject: "u-rev" });
  t.equal(r.status, 200);
  t.match(await r.json(), { added: 1 });
  const a = await h.refresh(form({ grant_type: "refresh_token", refresh_token: before }));
  t.equal(a.status, 400);
  await a.text();
  const b = await h.api(beforeAccess);
  t.equal(b.status, 401);
  await b.text();
  await settle();
  t.equal(h.reasonOf(b), "revoked");
  // A token issued after the rule works (the user logged in again).
  const later = await mint("access", { claims: { sub: "u-rev", iat: now() + 2 } });
  const c = await h.api(later);
  t.equal(c.status, 200);
  await c.text();

  // Per client, issued before an instant.
  const cutoff = new Date(Date.now() - 60_000).toISOString();
  const old = await mint("access", { claims: { client_id: "mobile-android", iat: now() - 120 } });
  const fresh = await mint("access", { claims: { client_id: "mobile-android" } });
  const rc = await h.admin("/admin/auth/revoke", { client: "mobile-android", issuedBefore: cutoff });
  t.equal(rc.status, 200);
  await rc.text();
  t.equal((await h.api(old)).status, 401);
  t.equal((await h.api(fresh)).status, 200);

  // Per jti.
  const one = await mint("access", { claims: { jti: "acc-jti-1" } });
  await (await h.admin("/admin/auth/revoke", { jti: "acc-jti-1" })).text();
  t.equal((await h.api(one)).status, 401);

  // The admin API needs the admin token.
  const noToken = await fetch(`${h.gw.adminUrl}/admin/auth/revoke`, {
    method: "POST",
    body: '{"subject":"x"}',
  });
  t.equal(noToken.status, 401);
  await noToken.text();
  const badBody = await h.admin("/admin/auth/revoke", { subject: "" });
  t.equal(badBody.status, 400);
  await badBody.text();
  const future = await h.admin("/admin/auth/revoke", { subject: "x", issuedBefore: "2999-01-01T00:00:00Z" });
  t.equal(future.status, 400);
  await future.text();
  const status = (await (await fetch(`${h.gw.adminUrl}/admin/auth/status`)).json()) as {
    rules: Record<string, number>;
  };
  t.ok(status.rules.subject! >= 1 && status.rules.client! >= 1 && status.rules.jti! >= 1);
});

t.test("rejection metric has bounded reasons", async (t) => {
  const text = await (await fetch(`${h.gw.adminUrl}/metrics`)).text();
  for (const reason of ["expired", "revoked", "replayed", "bad_signature", "malformed"])
    t.match(
      text,
      new RegExp(`edgeway_auth_rejections_total\\{route="(api|token)",reason="${reason}"\\} \\d+`),
      reason,
    );
});
