/**
 * Shared state in the real Redis (127.0.0.1:6379): rules published to every gateway, replay detected
 * across gateways, expired rules cleaned up, and what happens when Redis goes down (through a TCP proxy
 * the test can cut): rules held in memory keep being enforced, the refresh endpoint fails closed.
 */
import { randomUUID } from "node:crypto";
import type { AddressInfo } from "node:net";
import { connect, createServer, type Server, type Socket } from "node:net";
import { Redis } from "ioredis";
import t from "tap";
import { type AuthHarness, authSection, settle, startAuthHarness } from "./harness.ts";
import { form, mint } from "./tokens.ts";

const prefix = `edgeway:auth:test:${randomUUID()}:`;
const redis = new Redis("redis://127.0.0.1:6379", { lazyConnect: false });

t.teardown(async () => {
  const keys = await redis.keys(`${prefix}*`);
  if (keys.length > 0) await redis.del(...keys);
  redis.disconnect();
});

/** A TCP proxy to the real Redis that the test can stop (Redis down) and start again on the same port. */
class RedisLink {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  port = 0;
  async up(): Promise<void> {
    this.server = createServer((client) => {
      const upstream = connect(6379, "127.0.0.1");
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on("error", () => {});
        s.once("close", () => this.sockets.delete(s));
      }
      client.pipe(upstream).pipe(client);
      client.once("close", () => upstream.destroy());
      upstream.once("close", () => client.destroy());
    });
    await new Promise<void>((r) => this.server!.listen(this.port, "127.0.0.1", () => r()));
    this.port = (this.server.address() as AddressInfo).port;
  }
  async down(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }
}

const poll = async (fn: () => Promise<boolean>, ms = 3000) => {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (await fn()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
};

const refreshStatus = async (h: AuthHarness, token: string) => {
  const r = await h.refresh(form({ grant_type: "refresh_token", refresh_token: token }));
  await r.text();
  return r.status;
};
const apiStatus = async (h: AuthHarness, token: string) => {
  const r = await h.api(token);
  await r.text();
  return r.status;
};

t.test("rules and replay state are shared by every gateway", async (t) => {
  const cfg = authSection({
    redis: { url: "redis://127.0.0.1:6379", keyPrefix: prefix, syncInterval: "200ms" },
  });
  const a = await startAuthHarness(cfg);
  const b = await startAuthHarness(cfg);
  t.teardown(() => Promise.all([a.close(), b.close()]));
  await Promise.all([a.storeReady(), b.storeReady()]);

  const tok = await mint("access", { claims: { sub: "u-shared" } });
  t.equal(await apiStatus(b, tok), 200);
  const res = await a.admin("/admin/auth/revoke", { subject: "u-shared", reason: "test" });
  t.equal(res.status, 200);
  await res.text();
  t.ok(await poll(async () => (await apiStatus(b, tok)) === 401), "B learns the rule published by A");
  t.ok(await redis.hget(`${prefix}{rules}`, "subject:u-shared"), "the rule is stored in Redis");

  // A refresh token used at A, then replayed at B after the grace window: replay, family revoked everywhere.
  const sid = `sid-${randomUUID()}`;
  const rt = await mint("refresh", { claims: { sid } });
  const sibling = await mint("refresh", { claims: { sid } });
  t.equal(await refreshStatus(a, rt), 200);
  t.equal(await refreshStatus(b, rt), 200, "inside the grace window, even on another gateway");
  await new Promise((r) => setTimeout(r, 1100));
  t.equal(await refreshStatus(b, rt), 400);
  await settle();
  t.ok(await poll(async () => (await refreshStatus(a, sibling)) === 400), "the family is revoked on A too");

  // A gateway started later loads the stored rules.
  const c = await startAuthHarness(cfg);
  t.teardown(() => c.close());
  t.ok(await poll(async () => (await apiStatus(c, tok)) === 401), "a new gateway loads the rules");

  // Expired rules are cleaned up from Redis and from memory.
  const r2 = await a.admin("/admin/auth/revoke", { subject: "u-short", expiresAt: Date.now() + 300 });
  await r2.text();
  t.ok(await redis.hget(`${prefix}{rules}`, "subject:u-short"));
  t.ok(
    await poll(async () => (await redis.hget(`${prefix}{rules}`, "subject:u-short")) === null),
    "the expired rule is deleted from Redis",
  );
  const rules = (await (await a.admin("/admin/auth/rules", { subject: "u-short" })).json()) as {
    rules: unknown[];
  };
  t.same(rules.rules, []);
});

t.test("Redis down: rules held in memory still apply, the refresh endpoint fails closed", async (t) => {
  const link = new RedisLink();
  await link.up();
  const redisCfg = {
    url: `redis://127.0.0.1:${link.port}`,
    keyPrefix: prefix,
    syncInterval: "100ms",
    staleAfter: "300ms",
    commandTimeout: "100ms",
  };
  const h = await startAuthHarness(authSection({ redis: redisCfg }));
  const lenient = await startAuthHarness(
    authSection({ redis: redisCfg, onStoreUnavailable: { refresh: "allow", access: "allow" } }),
  );
  t.teardown(async () => {
    await h.close();
    await lenient.close();
    await link.down();
  });
  await Promise.all([h.storeReady(), lenient.storeReady()]);

  const revoked = await mint("access", { claims: { sub: "u-down" } });
  const r = await h.admin("/admin/auth/revoke", { subject: "u-down" });
  t.equal(r.status, 200);
  await r.text();
  t.ok(await poll(async () => (await apiStatus(lenient, revoked)) === 401));
  t.equal(await refreshStatus(h, await mint("refresh")), 200, "Redis up: refresh works");

  await link.down();
  await new Promise((r) => setTimeout(r, 500));
  t.equal(await apiStatus(h, revoked), 401, "the revoked subject stays revoked (rule held in memory)");
  t.equal(
    await apiStatus(h, await mint("access")),
    200,
    "other access tokens pass (access: allow, the default)",
  );
  const refused = await h.refresh(
    form({ grant_type: "refresh_token", refresh_token: await mint("refresh") }),
  );
  t.equal(refused.status, 503, "refresh fails closed (the default)");
  t.same(await refused.json(), {
    error: "temporarily_unavailable",
    error_description: "the token cannot be checked right now; retry later",
  });
  t.equal(refused.headers.get("cache-control"), "no-store");
  await settle();
  t.equal(h.reasonOf(refused), "store_unavailable");
  t.equal(
    h.seen.filter((s) => s.url === "/oauth/token").length,
    1,
    "the upstream saw only the call made while up",
  );
  t.equal(await refreshStatus(lenient, await mint("refresh")), 200, "onStoreUnavailable.refresh: allow");
  t.equal(await apiStatus(lenient, revoked), 401, "even lenient keeps enforcing the rules it holds");
  const status = (await (await fetch(`${h.gw.adminUrl}/admin/auth/status`)).json()) as {
    store: { readable: boolean };
  };
  t.equal(status.store.readable, false);
  const adminDown = await h.admin("/admin/auth/revoke", { subject: "u-later" });
  t.equal(adminDown.status, 503, "a rule that cannot be stored is reported");
  await adminDown.text();

  await link.up();
  t.ok(
    await poll(async () => (await refreshStatus(h, await mint("refresh"))) === 200, 5000),
    "Redis back: refresh works again",
  );
});
