/**
 * TLS termination on the proxy listener (`server.tls`): HTTPS with forwarding headers that say so, a
 * renewed certificate picked up without a restart, a bad renewal refused while the old certificate
 * stays, the expiry as a metric, and config errors that name the key.
 */
import { X509Certificate } from "node:crypto";
import { once } from "node:events";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { request } from "node:https";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import t from "tap";
import { validateGatewayConfig } from "../../../gateway/core/config.ts";
import { httpsRedirectLocation } from "../../../gateway/core/tls.ts";
import { selfSigned as makeSelfSigned } from "../../helpers/certs.ts";
import { serviceAt, startGateway, startUpstream } from "../../helpers/gateway.ts";
import { until } from "../../helpers/until.ts";
import { acceptUpgrade, openUpgrade } from "../../helpers/websocket.ts";

const dir = mkdtempSync(join(tmpdir(), "edgeway-tls-"));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

const selfSigned = (cn: string) => makeSelfSigned(dir, cn);

/** One HTTPS GET trusting `ca`; the status, body and the certificate the server presented. */
function get(url: string, ca: string): Promise<{ status: number; body: string; cn: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { ca, agent: false }, (res) => {
      const peer = (res.socket as import("node:tls").TLSSocket).getPeerCertificate();
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => {
        body += d;
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body, cn: String(peer.subject?.CN) }));
    });
    req.on("error", reject);
    req.end();
  });
}

const first = selfSigned("edge-one");
const second = selfSigned("edge-two");
const certFile = join(dir, "tls.crt");
const keyFile = join(dir, "tls.key");
writeFileSync(certFile, first.cert);
writeFileSync(keyFile, first.key);

t.test("HTTPS on the proxy listener; a renewed certificate is served without a restart", async (t) => {
  const up = await startUpstream((req, res) =>
    res.end(JSON.stringify({ proto: req.headers["x-forwarded-proto"], forwarded: req.headers.forwarded })),
  );
  const gw = await startGateway({
    server: { tls: { cert: certFile, key: keyFile, reloadInterval: "100ms" } },
    services: { s: serviceAt(up.url) },
    routes: [{ match: { path: "/" }, service: "s" }],
  });
  t.teardown(async () => {
    await gw.close();
    await up.close();
  });
  const url = `https://127.0.0.1:${gw.gw.proxyAddress.port}/x`;
  const one = await get(url, first.cert);
  t.equal(one.status, 200);
  t.equal(one.cn, "edge-one");
  t.match(JSON.parse(one.body), { proto: "https", forwarded: /proto=https/ }, "upstreams learn it was HTTPS");
  const metrics = await (await fetch(`${gw.adminUrl}/metrics`)).text();
  const notAfter = new X509Certificate(first.cert).validTo;
  t.match(
    metrics,
    `edgeway_tls_certificate_expiry_timestamp_seconds ${Date.parse(notAfter) / 1000}`,
    "the expiry, for alerts",
  );

  // cert-manager writes the renewed pair: the next handshakes get it.
  writeFileSync(keyFile, second.key);
  writeFileSync(certFile, second.cert);
  const renewed = await until(
    () => get(url, second.cert).catch(() => undefined),
    (r) => r?.cn === "edge-two",
    5000,
    50,
  );
  t.equal(renewed?.cn, "edge-two", "the renewed certificate, same process");

  // A broken renewal (the key of another certificate) is refused; the current one stays.
  const failures = async () =>
    Number(
      /edgeway_tls_certificate_reloads_total\{result="failure"\} (\d+)/.exec(
        await (await fetch(`${gw.adminUrl}/metrics`)).text(),
      )?.[1] ?? 0,
    );
  const failed = await failures();
  writeFileSync(keyFile, first.key);
  t.equal(await until(failures, (n) => n > failed, 5000, 50), failed + 1, "the broken pair is counted");
  t.equal((await get(url, second.cert)).cn, "edge-two", "a bad pair is refused, the old certificate stays");
  t.ok(
    gw.logs.lines.some((l) => l.msg === "TLS certificate change refused; serving the previous certificate"),
    "and logged",
  );
  writeFileSync(keyFile, second.key);

  // Plain HTTP to the TLS port fails the handshake; it is counted and the gateway carries on.
  await new Promise<void>((resolve) => {
    const socket = connect(gw.gw.proxyAddress.port, "127.0.0.1", () =>
      socket.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
    );
    socket.on("close", () => resolve());
    socket.on("error", () => resolve());
    socket.resume();
  });
  const after = await (await fetch(`${gw.adminUrl}/metrics`)).text();
  t.match(after, /edgeway_tls_handshake_errors_total [1-9]/);
  t.equal((await get(url, second.cert)).status, 200, "still serving");
});

t.test("TLS config errors name the key", async (t) => {
  const base = {
    services: { s: serviceAt("http://127.0.0.1:9") },
    routes: [{ match: { path: "/" }, service: "s" }],
  };
  const problems = async (tls: Record<string, unknown>) =>
    validateGatewayConfig({ ...base, server: { tls } }).then(
      () => "",
      (err: Error) => err.message,
    );
  t.match(
    await problems({ cert: join(dir, "nope.crt"), key: keyFile }),
    /server\.tls\.cert: cannot read ".*nope\.crt": ENOENT/,
  );
  t.match(await problems({ cert: certFile, key: join(dir, "nope.key") }), /server\.tls\.key: cannot read/);
  const garbage = join(dir, "garbage.crt");
  writeFileSync(garbage, "not a certificate");
  t.match(await problems({ cert: garbage, key: keyFile }), /server\.tls\.cert: not a PEM certificate/);
  const otherKey = join(dir, "other.key");
  writeFileSync(otherKey, first.key);
  writeFileSync(certFile, second.cert);
  t.match(
    await problems({ cert: certFile, key: otherKey }),
    /server\.tls\.key: does not go with the certificate/,
  );
  t.match(await problems({ cert: certFile }), /server\.tls\.key/);
  t.match(await problems({ cert: certFile, key: keyFile, minVersion: "TLSv1.0" }), /server\.tls\.minVersion/);
  t.equal(await problems({ cert: certFile, key: keyFile }), "", "a good pair passes");
});

t.test("WebSocket upgrades over TLS (wss) are tunnelled, and say https upstream", async (t) => {
  const tls = await import("node:tls");
  writeFileSync(certFile, first.cert);
  writeFileSync(keyFile, first.key);
  const up = await startUpstream((_req, res) => res.end("plain"));
  const upgraded: import("node:stream").Duplex[] = [];
  up.server.on("upgrade", (req, socket) => {
    upgraded.push(socket);
    acceptUpgrade(req, socket, { "X-Seen-Proto": String(req.headers["x-forwarded-proto"]) });
  });
  const gw = await startGateway({
    server: { tls: { cert: certFile, key: keyFile } },
    services: { s: serviceAt(up.url) },
    routes: [{ match: { path: "/" }, service: "s" }],
  });
  t.teardown(async () => {
    await gw.close();
    for (const s of upgraded) s.destroy();
    await up.close();
  });
  const socket = tls.connect({ port: gw.gw.proxyAddress.port, host: "127.0.0.1", ca: first.cert });
  await once(socket, "secureConnect");
  const out = await openUpgrade(socket);
  t.match(out, /^HTTP\/1.1 101/);
  t.match(out, /x-seen-proto: https/i, "the upstream learns the client spoke TLS");
  t.match(out, /ping-frame/, "bytes flow both ways through TLS");
});

t.test("server.tls.redirectHttp: plain HTTP gets a 308 to the same URL over HTTPS", async (t) => {
  t.equal(httpsRedirectLocation("shop.example", "/a?b=1", 443), "https://shop.example/a?b=1");
  t.equal(httpsRedirectLocation("shop.example", "/", 8443), "https://shop.example:8443/");
  t.equal(httpsRedirectLocation("10.0.0.5", "/x", 443), "https://10.0.0.5/x");
  t.equal(httpsRedirectLocation("[::1]", "/x", 443), "https://[::1]/x");
  for (const [host, target] of [
    ["", "/x"],
    ["evil.example/path", "/x"],
    ["a b", "/x"],
    ["shop.example", "http://other/x"],
    ["shop.example", "//other/x"],
    ["-bad.example", "/x"],
  ] as const) {
    t.equal(
      httpsRedirectLocation(host, target, 443),
      undefined,
      `refused: ${JSON.stringify([host, target])}`,
    );
  }

  writeFileSync(certFile, first.cert);
  writeFileSync(keyFile, first.key);
  const { freePort } = await import("../../helpers/spawn-gateway.ts");
  const redirectPort = await freePort();
  const gw = await startGateway({
    server: {
      tls: {
        cert: certFile,
        key: keyFile,
        redirectHttp: { listen: { host: "127.0.0.1", port: redirectPort }, port: 8443 },
      },
    },
    services: { s: serviceAt("http://127.0.0.1:9") },
    routes: [{ match: { path: "/" }, service: "s" }],
  });
  t.teardown(() => gw.close());
  // fetch() does not let a caller set Host: a plain node:http request does.
  const plain = (path: string, host: string) =>
    new Promise<{ status: number; location: string | undefined; body: string }>((resolve, reject) => {
      const { request: httpRequest } = process.getBuiltinModule("node:http");
      httpRequest({ host: "127.0.0.1", port: redirectPort, path, headers: { host }, agent: false }, (r) => {
        let body = "";
        r.setEncoding("utf8");
        r.on("data", (d: string) => {
          body += d;
        });
        r.on("end", () => resolve({ status: r.statusCode ?? 0, location: r.headers.location, body }));
      })
        .on("error", reject)
        .end();
    });
  const res = await plain("/cart?item=7", "Shop.Example:80");
  t.equal(res.status, 308, "permanent, and the method and body are kept");
  t.equal(res.location, "https://shop.example:8443/cart?item=7");
  const bad = await plain("/x", "evil.example/steal");
  t.equal(bad.status, 400);
  t.match(JSON.parse(bad.body), { type: /bad_request$/, status: 400 });
});
