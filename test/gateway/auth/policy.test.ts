/** The pure parts: structural checks, claim policy, revocation rules. */
import fc from "fast-check";
import t from "tap";
import {
  checkClaims,
  checkHeader,
  claimHeaderValue,
  hasDuplicateMembers,
  inspectCompact,
  isCanonicalBase64url,
  TokenRejected,
} from "../../../gateway/auth/policy.ts";
import { makeRule, matchingRule, mergeRule, type Rule, ruleKey } from "../../../gateway/auth/rules.ts";

const reasonOf = (fn: () => void): string | undefined => {
  try {
    fn();
    return undefined;
  } catch (err) {
    if (err instanceof TokenRejected) return err.reason;
    throw err;
  }
};

t.test("hasDuplicateMembers", async (t) => {
  const dup = (text: string) => hasDuplicateMembers(text, JSON.parse(text));
  t.equal(dup('{"a":1,"b":2}'), false);
  t.equal(dup('{"a":1,"a":2}'), true);
  t.equal(dup('{"a":{"b":1},"b":2}'), false, "same name at different depths is fine");
  t.equal(dup('{"a":{"b":1,"b":2}}'), true);
  t.equal(dup('{"a":["x","a"],"c":"a"}'), false, "strings in values are not names");
  t.equal(dup('{"s\\u0075b":1,"sub":2}'), true, "escaped names are decoded");
  t.equal(dup('{"a\\"":1,"a":2}'), false);
  t.equal(dup('{"a" : 1, "a"\n:2}'), true, "whitespace before the colon");
  t.equal(dup('{"v":"x\\":1","w":"\\":"}'), false, "colons after escaped quotes inside values");
  t.equal(dup('[{"a":1},{"a":1}]'), false);
  fc.assert(fc.property(fc.dictionary(fc.string(), fc.jsonValue()), (obj) => !dup(JSON.stringify(obj))));
  fc.assert(
    fc.property(fc.string(), fc.jsonValue(), fc.jsonValue(), (k, a, b) =>
      dup(`{${JSON.stringify(k)}:${JSON.stringify(a)},${JSON.stringify(k)}:${JSON.stringify(b)}}`),
    ),
  );
});

t.test("isCanonicalBase64url", async (t) => {
  t.ok(isCanonicalBase64url("AQID"));
  t.ok(isCanonicalBase64url("AQI"));
  t.notOk(isCanonicalBase64url("AQJ"), "non-zero trailing bits");
  t.notOk(isCanonicalBase64url("AQI="), "padding");
  t.notOk(isCanonicalBase64url("A+/B"), "standard alphabet");
  t.notOk(isCanonicalBase64url("A"), "impossible length");
  t.notOk(isCanonicalBase64url("AQ ID"), "whitespace");
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 80 }), (b) =>
      isCanonicalBase64url(Buffer.from(b).toString("base64url")),
    ),
  );
});

t.test("inspectCompact and checkHeader", async (t) => {
  const b = (o: unknown) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const tok = `${b({ alg: "ES256", kid: "k" })}.${b({ a: 1 })}.AQID`;
  t.same(JSON.parse(inspectCompact(tok, 1000).headerText), { alg: "ES256", kid: "k" });
  t.equal(
    reasonOf(() => inspectCompact("", 10)),
    "missing_token",
  );
  t.equal(
    reasonOf(() => inspectCompact(tok, 10)),
    "malformed",
  );
  t.equal(
    reasonOf(() => inspectCompact("a.b", 100)),
    "malformed",
  );
  const notUtf8 = Buffer.from([0x7b, 0xff, 0x7d]).toString("base64url");
  t.equal(
    reasonOf(() => inspectCompact(`${notUtf8}.${b({})}.AQID`, 1000)),
    "malformed",
  );
  t.equal(
    reasonOf(() => inspectCompact(`${b({})}..AQID`, 1000)),
    "malformed",
  );
  const policy = { algorithms: ["ES256"], requireKid: true };
  t.equal(
    reasonOf(() => checkHeader({ alg: "ES256", kid: "k" }, policy)),
    undefined,
  );
  t.equal(
    reasonOf(() => checkHeader({ alg: "HS256", kid: "k" }, policy)),
    "algorithm_not_allowed",
  );
  t.equal(
    reasonOf(() => checkHeader({ alg: "ES256" }, policy)),
    "malformed",
  );
  t.equal(
    reasonOf(() => checkHeader({ alg: "ES256", kid: "k", x5u: "http://x" }, policy)),
    "malformed",
  );
  t.equal(
    reasonOf(() => checkHeader({ alg: "ES256", kid: "k", b64: false }, policy)),
    "malformed",
  );
});

t.test("checkClaims", async (t) => {
  const now = 1_800_000_000;
  const p = { clockTolerance: 30, maxLifetime: 3600, requireJti: true, requiredStrings: ["sid"] };
  const ok = { iat: now, exp: now + 600, jti: "j", sid: "s" };
  const r = (over: Record<string, unknown>) => reasonOf(() => checkClaims({ ...ok, ...over }, p, now));
  t.equal(r({}), undefined);
  t.equal(r({ exp: undefined }), "missing_claim");
  t.equal(r({ exp: Number.POSITIVE_INFINITY }), "malformed");
  t.equal(r({ exp: Number.NaN }), "malformed");
  t.equal(r({ exp: 1e300 }), "malformed");
  t.equal(r({ exp: now - 31 }), "expired");
  t.equal(r({ exp: now - 29, iat: now - 100 }), undefined, "inside the tolerance");
  t.equal(r({ iat: now + 31 }), "future_iat");
  t.equal(r({ iat: now + 29 }), undefined);
  t.equal(r({ nbf: now + 31 }), "not_yet_valid");
  t.equal(r({ exp: now + 3601 }), "lifetime_exceeded");
  t.equal(r({ exp: now + 3600 }), undefined, "exactly the cap");
  t.equal(r({ jti: undefined }), "missing_claim");
  t.equal(r({ jti: "" }), "malformed");
  t.equal(r({ sid: 5 }), "malformed");
  t.equal(r({ sid: undefined }), "missing_claim");
  t.equal(r({ sub: ["a"] }), "malformed");
});

t.test("claimHeaderValue", async (t) => {
  t.equal(claimHeaderValue("u1"), "u1");
  t.equal(claimHeaderValue(5), "5");
  t.equal(claimHeaderValue(["a", "b"]), '["a","b"]');
  t.equal(claimHeaderValue("a\r\nb"), "a%0D%0Ab");
  t.equal(claimHeaderValue("José"), "Jos%C3%A9");
  t.equal(claimHeaderValue(undefined), undefined);
});

t.test("revocation rules", async (t) => {
  const life = { maxTokenLifetime: 30 * 86_400_000, clockTolerance: 30_000 };
  const now = 1_800_000_000_000;
  const rules = new Map<string, Rule>();
  const put = (r: Rule) => rules.set(ruleKey(r.kind, r.id), r);
  put(makeRule({ kind: "subject", id: "u1" }, life, now));
  put(makeRule({ kind: "client", id: "mobile-ios", notBefore: now - 3_600_000 }, life, now));
  put(makeRule({ kind: "family", id: "f1" }, life, now));
  put(makeRule({ kind: "jti", id: "j1", expiresAt: now + 1000 }, life, now));
  const iat = now / 1000;
  t.equal(matchingRule(rules, { sub: "u1", iat: iat - 1 }, now)?.kind, "subject");
  t.equal(matchingRule(rules, { sub: "u1", iat: iat + 1 }, now), undefined, "issued after the rule");
  t.equal(matchingRule(rules, { client: "mobile-ios", iat: iat - 7200 }, now)?.kind, "client");
  t.equal(matchingRule(rules, { client: "mobile-ios", iat: iat - 60 }, now), undefined);
  t.equal(
    matchingRule(rules, { family: "f1", iat: iat + 100 }, now)?.kind,
    "family",
    "families have no notBefore",
  );
  t.equal(matchingRule(rules, { jti: "j1", iat }, now)?.kind, "jti");
  t.equal(matchingRule(rules, { jti: "j1", iat }, now + 1000), undefined, "expired rules do not match");
  const subj = rules.get("subject:u1")!;
  t.equal(subj.expiresAt, now + life.maxTokenLifetime + life.clockTolerance);
  const merged = mergeRule(subj, makeRule({ kind: "subject", id: "u1", notBefore: now - 5000 }, life, now));
  t.equal(merged.notBefore, now, "the later notBefore wins");
});
