/**
 * Whatever the input, the guard answers with a TokenRejected carrying a known reason (never a TypeError
 * or other surprise that would become a 500): random strings, and valid tokens with random edits.
 */
import fc from "fast-check";
import pino from "pino";
import t from "tap";
import { authGlobalSchema } from "../../../gateway/auth/config.ts";
import { TokenGuard } from "../../../gateway/auth/guard.ts";
import { KeySource } from "../../../gateway/auth/keys.ts";
import { REJECTION_REASONS, TokenRejected } from "../../../gateway/auth/policy.ts";
import { AuthStore } from "../../../gateway/auth/store.ts";
import { AUDIENCE, ISSUER, JWKS_FILE, mint, signRaw } from "./tokens.ts";

const logger = pino({ level: "silent" });
const cfg = authGlobalSchema.parse({ issuer: ISSUER, audience: AUDIENCE, jwks: { file: JWKS_FILE } });
const keys = new KeySource(cfg.jwks, logger);
const store = new AuthStore(undefined, logger);
const guard = new TokenGuard(cfg, keys, store);
t.teardown(async () => {
  keys.close();
  await store.close();
});

async function outcome(token: string, kind: "refresh" | "access"): Promise<string> {
  try {
    await guard.verifyJwt(token, kind);
    return "ok";
  } catch (err) {
    if (!(err instanceof TokenRejected)) throw err;
    if (!(REJECTION_REASONS as readonly string[]).includes(err.reason))
      throw new Error(`unknown reason ${err.reason}`);
    return err.reason;
  }
}

t.test("random strings", async (t) => {
  await keys.ready();
  await fc.assert(
    fc.asyncProperty(fc.string({ maxLength: 400 }), fc.constantFrom("refresh", "access"), async (s, kind) => {
      t.not(await outcome(s, kind as "refresh" | "access"), "ok");
    }),
    { numRuns: 300 },
  );
});

t.test("valid tokens with one edit", async (t) => {
  const tokens = await Promise.all([
    mint("access", { alg: "ES256" }),
    mint("access", { alg: "RS256" }),
    mint("access", { alg: "EdDSA" }),
  ]);
  for (const tok of tokens) t.equal(await outcome(tok, "access"), "ok");
  await fc.assert(
    fc.asyncProperty(
      fc.constantFrom(...tokens),
      fc.nat(),
      fc.string({ minLength: 0, maxLength: 3 }),
      async (tok, at, insert) => {
        const i = at % tok.length;
        const edited = tok.slice(0, i) + insert + tok.slice(i + 1);
        const r = await outcome(edited, "access");
        if (edited !== tok) t.not(r, "ok", `edit at ${i}`);
      },
    ),
    { numRuns: 400 },
  );
});

t.test("hand-made headers and payloads", async (t) => {
  const now = Math.floor(Date.now() / 1000);
  const claims = `"iss":"${ISSUER}","aud":"${AUDIENCE}","iat":${now},"exp":${now + 60}`;
  const odd = [
    ["{}", `{${claims}}`],
    ['{"alg":"ES256","typ":"at+jwt","kid":"example-es256-1","crit":"b64"}', `{${claims}}`],
    ['{"alg":"ES256","typ":"at+jwt","kid":"example-es256-1","crit":[]}', `{${claims}}`],
    ['{"alg":"ES256","typ":["at+jwt"],"kid":"example-es256-1"}', `{${claims}}`],
    ['{"alg":"ES256","typ":"at+jwt","kid":{"x":1}}', `{${claims}}`],
    ['{"alg":"ES256","typ":"at+jwt","kid":"example-es256-1"}', `{${claims},"aud":null}`],
    ['{"alg":"ES256","typ":"at+jwt","kid":"example-es256-1"}', `{${claims},"nbf":"x"}`],
    [
      '{"alg":"ES256","typ":"at+jwt","kid":"example-es256-1"}',
      `{"iss":"${ISSUER}","aud":[1,2],"iat":${now},"exp":${now + 60}}`,
    ],
    ['{"alg":"ES256","typ":"at+jwt","kid":"example-es256-1"}', "null"],
    ['{"alg":"ES256","typ":"at+jwt","kid":"example-es256-1"}', `{${claims}`],
    ['{"alg":"ES256","typ":"at+jwt","kid":"example-es256-1"}', `{${claims},"iat":1e999}`],
    ['{"alg":"ES256","typ":"at+jwt","kid":"example-es256-1"}', `{${claims},"__proto__":{"admin":true}}`],
    [
      '{"alg":"ES256","typ":"at+jwt","kid":"example-es256-1"}',
      `{${claims},"x":{"\\u005f_proto__":{"admin":true}}}`,
    ],
  ];
  for (const [h, p] of odd) {
    const r = await outcome(await signRaw(h!, p!), "access");
    t.not(r, "ok", `${h} ${p}`);
  }
});
