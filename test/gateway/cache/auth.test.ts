/** The cache behind the real token guard (gateway/auth): per-user and per-tenant scopes from verified claims. */
import t from "tap";
import { serviceAt, startGateway, startUpstream } from "../../helpers/gateway.ts";
import { authSection } from "../auth/harness.ts";
import { mint } from "../auth/tokens.ts";
import { get } from "./harness.ts";

t.test("verified tokens scope the cache: users never see each other's analytics", async (t) => {
  const up = await startUpstream((req, res) => {
    res.setHeader("cache-control", "max-age=60");
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify({ subject: req.headers["x-auth-subject"] ?? null, n: Math.random() }));
  });
  const gw = await startGateway({
    services: { s: serviceAt(up.url) },
    auth: authSection(),
    routes: [
      {
        name: "mine",
        match: { path: "/api/me" },
        service: "s",
        filters: [
          { auth: { mode: "accessToken", forwardClaims: { sub: "x-auth-subject" } } },
          { cache: { scope: "per-user" } },
        ],
      },
      {
        name: "team",
        match: { path: "/api/team" },
        service: "s",
        filters: [
          { auth: { mode: "accessToken", forwardClaims: { sub: "x-auth-subject" } } },
          { cache: { scope: "per-tenant" } },
        ],
      },
    ],
  });
  t.teardown(async () => {
    await gw.close();
    await up.close();
  });
  const token = (sub: string, tenant: string) => mint("access", { claims: { sub, tenant } });
  const alice = { authorization: `Bearer ${await token("alice", "t1")}` };
  const alice2 = { authorization: `Bearer ${await token("alice", "t1")}` }; // a new token, same user
  const bob = { authorization: `Bearer ${await token("bob", "t1")}` };
  const carol = { authorization: `Bearer ${await token("carol", "t2")}` };

  const a1 = await get(`${gw.url}/api/me/dashboard?id=7`, alice);
  t.equal(a1.status, 200);
  t.equal(JSON.parse(a1.body).subject, "alice");
  t.equal(a1.xCache, "MISS");
  const b1 = await get(`${gw.url}/api/me/dashboard?id=7`, bob);
  t.equal(JSON.parse(b1.body).subject, "bob", "bob does not get alice's entry");
  t.equal(b1.xCache, "MISS");
  const a2 = await get(`${gw.url}/api/me/dashboard?id=7`, alice2);
  t.equal(a2.xCache, "HIT", "alice's next token hits her own entry");
  t.equal(a2.body, a1.body);
  const b2 = await get(`${gw.url}/api/me/dashboard?id=7`, bob);
  t.equal(b2.body, b1.body);
  const anon = await get(`${gw.url}/api/me/dashboard?id=7`);
  t.equal(anon.status, 401, "no token: the guard refuses before the cache");

  await get(`${gw.url}/api/team/summary`, alice);
  t.equal((await get(`${gw.url}/api/team/summary`, bob)).xCache, "HIT", "same tenant shares");
  const c = await get(`${gw.url}/api/team/summary`, carol);
  t.equal(c.xCache, "MISS", "another tenant does not");
  t.equal(JSON.parse(c.body).subject, "carol");
});
