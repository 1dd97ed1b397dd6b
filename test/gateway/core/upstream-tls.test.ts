/**
 * HTTPS upstreams (`services.<name>.tls`): a private CA, mTLS with a client certificate, a server name
 * to verify when endpoints are addresses, and the config errors, against a real TLS server.
 */
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TLSSocket } from "node:tls";
import t, { type Test } from "tap";
import { validateGatewayConfig } from "../../../gateway/core/config.ts";
import { testCa } from "../../helpers/certs.ts";
import { startGateway } from "../../helpers/gateway.ts";
import { acceptUpgrade, openUpgrade } from "../../helpers/websocket.ts";

const dir = mkdtempSync(join(tmpdir(), "edgeway-upstream-tls-"));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const ca = testCa(dir);
const server = ca.issue("upstream", "DNS:upstream.test", "serverAuth");
const client = ca.issue("gateway", "DNS:gateway.test", "clientAuth");

/** An HTTPS upstream for upstream.test that asks for a client certificate and answers who sent it. */
async function startTlsUpstream(requireClientCert: boolean): Promise<{ url: string; server: Server }> {
  const s = createServer(
    {
      cert: server.cert,
      key: server.key,
      ca: ca.cert,
      requestCert: requireClientCert,
      rejectUnauthorized: requireClientCert,
    },
    (req, res) => {
      const peer = (req.socket as TLSSocket).getPeerCertificate();
      res.end(JSON.stringify({ client: peer?.subject?.CN ?? null, proto: req.headers["x-forwarded-proto"] }));
    },
  );
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", () => r()));
  return { url: `https://127.0.0.1:${(s.address() as { port: number }).port}`, server: s };
}

async function gatewayTo(t: Test, url: string, tls: Record<string, unknown> | undefined) {
  const gw = await startGateway({
    services: { s: { endpoints: { local: [{ url }] }, ...(tls ? { tls } : {}) } },
    routes: [{ match: { path: "/" }, service: "s", retries: { attempts: 0 } }],
  });
  t.teardown(() => gw.close());
  return gw;
}

t.test("a private CA and the server name to verify; without them the upstream is refused", async (t) => {
  const up = await startTlsUpstream(false);
  t.teardown(() => new Promise<void>((r) => up.server.close(() => r())));
  const trusting = await gatewayTo(t, up.url, { ca: ca.certFile, servername: "upstream.test" });
  const ok = await fetch(`${trusting.url}/x`);
  t.equal(ok.status, 200);
  t.match(await ok.json(), { client: null });

  const noCa = await gatewayTo(t, up.url, { servername: "upstream.test" });
  const unknownCa = await fetch(`${noCa.url}/x`);
  t.equal(unknownCa.status, 502, "an unknown CA: the connection is refused");
  t.match(await unknownCa.json(), {
    type: /upstream_tls$/,
    detail: /^TLS with service "s" failed \((SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE)\)$/,
  });
  const wrongName = await gatewayTo(t, up.url, { ca: ca.certFile });
  const mismatch = await fetch(`${wrongName.url}/x`);
  t.equal(mismatch.status, 502, "127.0.0.1 is not the certificate's name");
  t.match(await mismatch.json(), { type: /upstream_tls$/ });
});

t.test("mTLS: the client certificate the upstream requires", async (t) => {
  const up = await startTlsUpstream(true);
  t.teardown(() => new Promise<void>((r) => up.server.close(() => r())));
  const withCert = await gatewayTo(t, up.url, {
    ca: ca.certFile,
    servername: "upstream.test",
    cert: client.certFile,
    key: client.keyFile,
  });
  const ok = await fetch(`${withCert.url}/x`);
  t.equal(ok.status, 200);
  t.match(await ok.json(), { client: "gateway" }, "the upstream saw the gateway's certificate");
  const without = await gatewayTo(t, up.url, { ca: ca.certFile, servername: "upstream.test" });
  const refused = await fetch(`${without.url}/x`);
  t.equal(refused.status, 502, "no client certificate: refused");
  t.match(await refused.json(), { type: /upstream_tls$/, detail: /ALERT_CERTIFICATE_REQUIRED/ });
});

t.test("upstream TLS config errors name the key", async (t) => {
  const problems = (tls: Record<string, unknown>) =>
    validateGatewayConfig({
      services: { api: { endpoints: { local: [{ url: "https://127.0.0.1:1" }] }, tls } },
      routes: [{ match: { path: "/" }, service: "api" }],
    }).then(
      () => "",
      (err: Error) => err.message,
    );
  t.match(await problems({ cert: client.certFile }), /services\.api\.tls\.key: cert and key go together/);
  t.match(
    await problems({ ca: join(dir, "none.pem") }),
    /services\.api\.tls\.ca: cannot read ".*none\.pem": ENOENT/,
  );
  t.match(
    await problems({ cert: client.certFile, key: server.keyFile }),
    /services\.api\.tls\.key: does not go with the certificate/,
  );
  t.equal(
    await problems({ ca: ca.certFile, cert: client.certFile, key: client.keyFile }),
    "",
    "a good set passes",
  );
});

t.test(
  "WebSocket upgrades to an https upstream use its CA, client certificate and server name",
  async (t) => {
    const { connect } = await import("node:net");
    const up = await startTlsUpstream(true);
    t.teardown(() => new Promise<void>((r) => up.server.close(() => r())));
    const sockets: import("node:stream").Duplex[] = [];
    t.teardown(() => {
      for (const s of sockets) s.destroy();
    });
    up.server.on("upgrade", (req, socket) => {
      sockets.push(socket);
      acceptUpgrade(req, socket, {
        "X-Client-Cert": String((socket as TLSSocket).getPeerCertificate()?.subject?.CN),
      });
    });
    const gw = await gatewayTo(t, up.url, {
      ca: ca.certFile,
      servername: "upstream.test",
      cert: client.certFile,
      key: client.keyFile,
    });
    const socket = connect(Number(new URL(gw.url).port), "127.0.0.1");
    await once(socket, "connect");
    const out = await openUpgrade(socket);
    t.match(out, /^HTTP\/1.1 101/, "upgraded through TLS to the upstream");
    t.match(out, /x-client-cert: gateway/i, "with the gateway's client certificate");
    t.match(out, /ping-frame/, "bytes flow both ways");
  },
);
