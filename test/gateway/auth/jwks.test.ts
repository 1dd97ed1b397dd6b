/**
 * Key handling: a remote JWKS (createRemoteJWKSet) that rolls, random kids that must not hammer the IdP,
 * an IdP outage with the last good set kept, a start with the IdP down, and a JWKS file that rolls.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { exportJWK, generateKeyPair, type JWK } from "jose";
import t from "tap";
import { startUpstream } from "../../helpers/gateway.ts";
import { authSection, startAuthHarness } from "./harness.ts";
import { mint } from "./tokens.ts";

async function keyPair(kid: string): Promise<{ pub: JWK; priv: JWK }> {
  const { publicKey, privateKey } = await generateKeyPair("ES256", { extractable: true });
  return {
    pub: { ...(await exportJWK(publicKey)), kid, alg: "ES256", use: "sig" },
    priv: { ...(await exportJWK(privateKey)), kid, alg: "ES256" },
  };
}

const status = async (res: Promise<Response>) => {
  const r = await res;
  await r.text();
  return r.status;
};

t.test("remote JWKS: rotation, unknown kids, IdP outage", async (t) => {
  const k1 = await keyPair("k1");
  const k2 = await keyPair("k2");
  let served: JWK[] = [k1.pub];
  let idpUp = true;
  let fetches = 0;
  const idp = await startUpstream((_req, res) => {
    fetches++;
    if (!idpUp) {
      res.statusCode = 503;
      res.end("down");
      return;
    }
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify({ keys: served }));
  });
  const h = await startAuthHarness(
    authSection({
      jwks: { url: `${idp.url}/.well-known/jwks.json`, cooldown: "500ms", refreshInterval: "300ms" },
    }),
  );
  t.teardown(async () => {
    await h.close();
    await idp.close();
  });

  t.equal(await status(h.api(await mint("access", { key: k1.priv }))), 200, "k1 accepted");

  // The IdP rolls to k2: a token with the new kid triggers one refetch and is accepted, no restart.
  served = [k1.pub, k2.pub];
  const before = fetches;
  t.equal(await status(h.api(await mint("access", { key: k2.priv }))), 200, "k2 accepted after the roll");
  t.ok(fetches - before <= 2, "at most the refetch (and perhaps a scheduled refresh)");

  // Random kids: at most one refetch per cooldown, however many requests.
  await new Promise((r) => setTimeout(r, 600));
  const start = fetches;
  const t0 = Date.now();
  const random = await Promise.all(
    Array.from({ length: 60 }, async (_, i) =>
      status(h.api(await mint("access", { key: k1.priv, kid: `rnd-${i}` }))),
    ),
  );
  const elapsed = Date.now() - t0;
  t.ok(
    random.every((s) => s === 401),
    "unknown kids are rejected",
  );
  const allowed = 1 + Math.ceil(elapsed / 500) + Math.ceil(elapsed / 300);
  t.ok(fetches - start <= allowed, `60 random kids caused ${fetches - start} fetches (≤ ${allowed})`);

  // The IdP goes down: scheduled refreshes fail, the last good set is kept.
  idpUp = false;
  await new Promise((r) => setTimeout(r, 700));
  t.ok(fetches > start, "refreshes were attempted");
  t.equal(
    await status(h.api(await mint("access", { key: k2.priv }))),
    200,
    "k2 still accepted while the IdP is down",
  );
  t.equal(await status(h.api(await mint("access", { key: k1.priv }))), 200, "k1 too");
  const keysStatus = (await (await fetch(`${h.gw.adminUrl}/admin/auth/status`)).json()) as {
    keys: { kids: string[]; failures: number };
  };
  t.same(keysStatus.keys.kids, ["k1", "k2"]);
  t.ok(keysStatus.keys.failures > 0);

  // The IdP comes back having retired k1.
  served = [k2.pub];
  idpUp = true;
  let gone = false;
  for (let i = 0; i < 40 && !gone; i++) {
    await new Promise((r) => setTimeout(r, 100));
    gone = (await status(h.api(await mint("access", { key: k1.priv })))) === 401;
  }
  t.ok(gone, "a retired key stops working after the refresh");
});

t.test("the IdP is down at start: 503, never 500 nor acceptance", async (t) => {
  const h = await startAuthHarness(
    authSection({ jwks: { url: "http://127.0.0.1:9/jwks.json", cooldown: "200ms", timeout: "200ms" } }),
  );
  t.teardown(() => h.close());
  const a = await h.api(await mint("access"));
  t.equal(a.status, 503);
  t.equal(a.headers.get("content-type"), "application/problem+json");
  await a.text();
  const r = await h.refresh(`grant_type=refresh_token&refresh_token=${await mint("refresh")}`);
  t.equal(r.status, 503);
  t.match(await r.json(), { error: "temporarily_unavailable" });
  t.equal(h.seen.length, 0);
});

t.test("JWKS file: keys roll without a restart; private key files are refused", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "edgeway-jwks-"));
  const file = join(dir, "jwks.json");
  const a = await keyPair("file-a");
  const b = await keyPair("file-b");
  writeFileSync(file, JSON.stringify({ keys: [a.pub] }));
  const h = await startAuthHarness(authSection({ jwks: { file, cooldown: "200ms", refreshInterval: "1h" } }));
  t.teardown(async () => {
    await h.close();
    rmSync(dir, { recursive: true, force: true });
  });
  t.equal(await status(h.api(await mint("access", { key: a.priv }))), 200);
  writeFileSync(file, JSON.stringify({ keys: [b.pub] }));
  let ok = false;
  for (let i = 0; i < 40 && !ok; i++) {
    await new Promise((r) => setTimeout(r, 100));
    ok = (await status(h.api(await mint("access", { key: b.priv })))) === 200;
  }
  t.ok(ok, "the new key is picked up");
  t.equal(await status(h.api(await mint("access", { key: a.priv }))), 401, "the removed key is gone");
  // A broken or private file keeps the last good set.
  writeFileSync(file, JSON.stringify({ keys: [b.priv] }));
  await new Promise((r) => setTimeout(r, 2500));
  t.equal(await status(h.api(await mint("access", { key: b.priv }))), 200, "last good set kept");
});
