/**
 * Boots exactly config/examples/token-guard.yaml (ports overridden to 0, the demo origin started on an
 * ephemeral port) and exercises it, including the `edgeway auth revoke` CLI against its admin API.
 */
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import t from "tap";
import { parse } from "yaml";
import { startDemoOrigin } from "../../../gateway/demo/origin.ts";
import { startGateway } from "../../helpers/gateway.ts";
import { form, mint } from "./tokens.ts";

const run = promisify(execFile);
const root = new URL("../../../", import.meta.url).pathname;
// biome-ignore lint/suspicious/noExplicitAny: the example file is read as untyped YAML.
type Untyped = any;
const example = parse(readFileSync(join(root, "config/examples/token-guard.yaml"), "utf8")) as Record<
  string,
  Untyped
>;

t.test("the token-guard example", async (t) => {
  t.equal(example.server.listen.port, 8080);
  t.equal(example.admin.listen.port, 9090);
  t.equal(example.demoOrigin.enabled, true);
  t.equal(example.auth.issuer, "https://auth.example.test");
  t.equal(example.auth.audience, "edgeway-demo");
  t.equal(example.auth.clockTolerance, "30s");
  t.equal(example.auth.refreshTokens.maxLifetime, "30d");
  t.equal(example.auth.refreshTokens.reuseGrace, "10s");
  t.equal(example.auth.redis, undefined, "no Redis: state in memory");

  const demo: Server = await startDemoOrigin("127.0.0.1", 0);
  const demoUrl = `http://127.0.0.1:${(demo.address() as AddressInfo).port}`;
  const cfg = structuredClone(example);
  cfg.server.listen.port = 0;
  cfg.admin.listen.port = 0;
  cfg.demoOrigin.listen.port = 0;
  cfg.services.demo.endpoints.local[0].url = demoUrl;
  cfg.telemetry = { logs: { level: "warn", access: false } };
  const gw = await startGateway(cfg);
  const dir = mkdtempSync(join(tmpdir(), "edgeway-auth-cli-"));
  t.teardown(async () => {
    await gw.close();
    await new Promise<void>((r) => demo.close(() => r()));
    rmSync(dir, { recursive: true, force: true });
  });

  const refresh = (token: string) =>
    fetch(`${gw.url}/oauth/token`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: form({ grant_type: "refresh_token", refresh_token: token, client_id: "mobile-ios" }),
    });
  const api = (token?: string) =>
    fetch(`${gw.url}/api/profile`, { headers: token ? { authorization: `Bearer ${token}` } : {} });

  // Valid tokens of every example key reach the demo origin, which echoes what it got.
  for (const alg of ["ES256", "RS256", "EdDSA"] as const) {
    const rt = await mint("refresh", { alg });
    const r = await refresh(rt);
    t.equal(r.status, 200, `${alg} refresh`);
    const echo = (await r.json()) as { body: string; path: string };
    t.equal(echo.path, "/oauth/token");
    t.equal(echo.body, form({ grant_type: "refresh_token", refresh_token: rt, client_id: "mobile-ios" }));
    const a = await api(await mint("access", { alg }));
    t.equal(a.status, 200, `${alg} access`);
    const e2 = (await a.json()) as { headers: Record<string, string> };
    t.equal(e2.headers["x-auth-subject"], "u123");
    t.equal(e2.headers["x-auth-client"], "mobile-ios");
  }

  // The incident: an expired refresh token is refused at the edge.
  const now = Math.floor(Date.now() / 1000);
  const expired = await refresh(
    await mint("refresh", { claims: { iat: now - 40 * 86400, exp: now - 86400 } }),
  );
  t.equal(expired.status, 400);
  t.same(await expired.json(), { error: "invalid_grant", error_description: "the token has expired" });
  t.equal(expired.headers.get("cache-control"), "no-store");
  const noToken = await api();
  t.equal(noToken.status, 401);
  await noToken.text();

  // Replay after the 10 s grace cannot be waited for here; inside it both calls pass.
  const rt = await mint("refresh");
  t.equal((await refresh(rt)).status, 200);
  t.equal((await refresh(rt)).status, 200, "second use inside the grace window");

  // The CLI against the admin API: per client issued before an instant, per subject, bulk from a file.
  const cli = (...args: string[]) =>
    run(join(root, "node_modules/.bin/node"), [join(root, "bin/edgeway.js"), "auth", ...args], {
      cwd: root,
      env: { ...process.env, EDGEWAY_ADMIN_URL: gw.adminUrl, EDGEWAY_ADMIN_TOKEN: example.admin.token },
    });
  const oldIos = await mint("access", { claims: { iat: now - 60, client_id: "mobile-ios", sub: "u-ios" } });
  const out1 = await cli(
    "revoke",
    "--client",
    "mobile-ios",
    "--issued-before",
    new Date((now - 10) * 1000).toISOString(),
  );
  t.match(out1.stdout, /revoked: 1 rule/);
  t.equal((await api(oldIos)).status, 401, "mobile-ios tokens issued before the instant are rejected");
  t.equal(
    (await api(await mint("access", { claims: { client_id: "mobile-ios", sub: "u-ios" } }))).status,
    200,
  );

  const u123 = await mint("refresh", { claims: { sub: "u123", client_id: "web" } });
  const out2 = await cli("revoke", "--subject", "u123");
  t.match(out2.stdout, /revoked: 1 rule/);
  const r3 = await refresh(u123);
  t.equal(r3.status, 400, "u123 must log in again");
  await r3.text();

  const file = join(dir, "affected.txt");
  writeFileSync(file, "# affected users\nu-a\nu-b\n\nu-c\n");
  const tokB = await mint("access", { claims: { sub: "u-b", client_id: "web" } });
  const out3 = await cli("revoke", "--subjects-file", file, "--reason", "incident 5");
  t.match(out3.stdout, /revoked: 3 rule/);
  t.equal((await api(tokB)).status, 401);

  // Without the admin token the CLI fails cleanly (exit 1, no stack).
  const denied = await run(
    join(root, "node_modules/.bin/node"),
    [join(root, "bin/edgeway.js"), "auth", "revoke", "--subject", "x"],
    {
      cwd: root,
      env: { ...process.env, EDGEWAY_ADMIN_URL: gw.adminUrl, EDGEWAY_ADMIN_TOKEN: "" },
    },
  ).catch((e: { code: number; stderr: string }) => e);
  t.equal((denied as { code: number }).code, 1);
  t.match((denied as { stderr: string }).stderr, /401/);
  const usage = await cli("revoke").catch((e: { code: number }) => e);
  t.equal((usage as { code: number }).code, 2);

  const status = await cli("status");
  t.match(JSON.parse(status.stdout), { rules: { subject: 4, client: 1 }, keys: { loaded: true } });
});
