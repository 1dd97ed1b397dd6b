/** Opaque refresh tokens checked by RFC 7662 introspection against a real (test) auth service. */
import t from "tap";
import { startUpstream } from "../../helpers/gateway.ts";
import { authSection, settle, startAuthHarness } from "./harness.ts";
import { form } from "./tokens.ts";

t.test("opaque refresh tokens", async (t) => {
  const now = () => Math.floor(Date.now() / 1000);
  const answers: Record<string, () => Record<string, unknown>> = {
    "opaque-good": () => ({
      active: true,
      sub: "u9",
      client_id: "web",
      iat: now() - 10,
      exp: now() + 3600,
      jti: "op-1",
    }),
    "opaque-short": () =>
      Date.now() < shortUntil
        ? { active: true, sub: "u9", iat: now() - 10, exp: Math.ceil(shortUntil / 1000) }
        : { active: false },
    "opaque-noexp": () => ({ active: true, sub: "u9", iat: now() }),
    "opaque-long": () => ({ active: true, sub: "u9", iat: now(), exp: now() + 90 * 86400 }),
    "opaque-access": () => ({ active: true, token_type: "access_token", iat: now(), exp: now() + 60 }),
    "opaque-nojti": () => ({ active: true, sub: "u9", iat: now() - 10, exp: now() + 3600 }),
  };
  let shortUntil = Date.now() + 1500;
  const calls: Record<string, number> = {};
  let authHeader: string | undefined;
  let broken = false;
  const as = await startUpstream((req, res) => {
    authHeader = req.headers.authorization;
    let body = "";
    req.on("data", (c) => {
      body += c;
    });
    req.on("end", () => {
      if (broken) {
        res.statusCode = 500;
        res.end();
        return;
      }
      const token = new URLSearchParams(body).get("token") ?? "";
      calls[token] = (calls[token] ?? 0) + 1;
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify(answers[token]?.() ?? { active: false }));
    });
  });
  const h = await startAuthHarness(
    authSection({
      clockTolerance: "0s",
      refreshTokens: {
        maxLifetime: "30d",
        reuseGrace: "1s",
        introspection: {
          url: `${as.url}/introspect`,
          clientId: "edgeway",
          clientSecret: "s3cret",
          cacheTtl: "60s",
        },
      },
    }),
  );
  t.teardown(async () => {
    await h.close();
    await as.close();
  });
  const refresh = async (token: string) => {
    const r = await h.refresh(form({ grant_type: "refresh_token", refresh_token: token }));
    const body = await r.text();
    await settle();
    return { status: r.status, body, reason: h.reasonOf(r) };
  };

  t.equal((await refresh("opaque-good")).status, 200);
  t.equal(authHeader, `Basic ${Buffer.from("edgeway:s3cret").toString("base64")}`);
  t.equal((await refresh("opaque-good")).status, 200, "within the grace window");
  t.equal(calls["opaque-good"], 1, "the second check came from the cache");
  await new Promise((r) => setTimeout(r, 1100));
  t.match(await refresh("opaque-good"), { status: 400, reason: "replayed" });

  t.match(await refresh("opaque-unknown"), { status: 400, reason: "inactive" });
  t.match(await refresh("opaque-noexp"), { status: 400, reason: "missing_claim" });
  t.match(await refresh("opaque-long"), { status: 400, reason: "lifetime_exceeded" });
  t.match(await refresh("opaque-access"), { status: 400, reason: "wrong_type" });
  t.match(await refresh("bad token with spaces"), { status: 400, reason: "malformed" });

  // The cache never outlives the token's exp.
  shortUntil = (Math.floor(Date.now() / 1000) + 2) * 1000;
  t.equal((await refresh("opaque-short")).status, 200);
  await new Promise((r) => setTimeout(r, shortUntil - Date.now() + 200));
  t.match(await refresh("opaque-short"), { status: 400, reason: "inactive" });
  t.equal(calls["opaque-short"], 2, "asked again once the cached answer reached exp");

  // Without a jti, replay is keyed on the token's hash.
  t.equal((await refresh("opaque-nojti")).status, 200);
  await new Promise((r) => setTimeout(r, 1100));
  t.match(await refresh("opaque-nojti"), { status: 400, reason: "replayed" });

  broken = true;
  const down = await refresh("opaque-new");
  t.equal(down.status, 503);
  t.equal(down.reason, "introspection_unavailable");
  t.equal(h.seen.length, 4, "only the accepted calls reached the upstream");
});
