import { once } from "node:events";
import { writeFileSync } from "node:fs";
import { connect } from "node:net";
import t from "tap";
import { stringify } from "yaml";
import { serviceAt, startGateway, startUpstream } from "../../helpers/gateway.ts";
import { freePort, spawnEdgeway, waitReady, writeConfig } from "../../helpers/spawn-gateway.ts";
import { acceptUpgrade, openUpgrade } from "../../helpers/websocket.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test("WebSocket upgrades are tunnelled to the upstream", async (t) => {
  const up = await startUpstream((_req, res) => res.end("plain"));
  const upgraded: import("node:stream").Duplex[] = [];
  up.server.on("upgrade", (req, socket) => {
    upgraded.push(socket);
    acceptUpgrade(req, socket, { "X-Seen-Via": String(req.headers.via) });
  });
  const gw = await startGateway({
    services: { s: serviceAt(up.url) },
    routes: [{ match: { path: "/" }, service: "s" }],
  });
  t.teardown(async () => {
    await gw.close();
    for (const s of upgraded) s.destroy();
    await up.close();
  });
  const socket = connect(Number(new URL(gw.url).port), "127.0.0.1");
  await once(socket, "connect");
  const out = await openUpgrade(socket);
  t.match(out, /^HTTP\/1.1 101/);
  t.match(out, /sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK\+xOo=/i);
  t.match(out, /x-seen-via: 1.1 edgeway/i, "forwarding headers added");
  t.match(out, /ping-frame/, "bytes flow both ways");
});

t.test(
  "reload: a good file takes effect, a bad file keeps the running config, in-flight requests finish",
  async (t) => {
    const a = await startUpstream((_req, res) => res.end("A"));
    const b = await startUpstream((req, res) => {
      if (req.url === "/slow") return void setTimeout(() => res.end("B-slow"), 300);
      res.end("B");
    });
    const base = { services: { s: serviceAt(b.url) }, routes: [{ match: { path: "/" }, service: "s" }] };
    const gw = await startGateway(base);
    t.teardown(async () => {
      await gw.close();
      await a.close();
      await b.close();
    });
    const cfg = (services: unknown) =>
      stringify({
        server: { listen: { host: "127.0.0.1", port: 0 } },
        admin: { listen: { host: "127.0.0.1", port: 0 } },
        telemetry: { logs: { level: "warn" } },
        services,
        routes: base.routes,
      });
    const inflight = fetch(`${gw.url}/slow`).then((r) => r.text());
    while (!b.requests.some((r) => r.url === "/slow")) await sleep(10);
    writeFileSync(gw.file, cfg({ s: serviceAt(a.url) }));
    t.equal(await gw.gw.reload(), true);
    t.equal(await (await fetch(`${gw.url}/x`)).text(), "A", "new config serves");
    t.equal(await inflight, "B-slow", "the in-flight request finished on the old config");

    writeFileSync(gw.file, "services: {}\nroutes:\n  - service: nope\n    timeouts: { connect: fast }\n");
    t.equal(await gw.gw.reload(), false);
    t.equal(await (await fetch(`${gw.url}/x`)).text(), "A", "still the last good config");
    const err = gw.logs.lines.find(
      (l) => l.msg === "configuration reload failed; keeping the running configuration",
    );
    t.ok(err, "the failure is logged");
    t.match(
      JSON.stringify(err?.reason),
      /routes\[0\]\.timeouts\.connect: expected a duration like \\"2s\\", got \\"fast\\"/,
    );
    const m = await (await fetch(`${gw.adminUrl}/metrics`)).text();
    t.match(m, /edgeway_config_reloads_total\{result="success"\} 1/);
    t.match(m, /edgeway_config_reloads_total\{result="failure"\} 1/);
  },
);

t.test("reload on file change (watch)", async (t) => {
  const a = await startUpstream((_req, res) => res.end("A"));
  const b = await startUpstream((_req, res) => res.end("B"));
  const gw = await startGateway(
    { services: { s: serviceAt(a.url) }, routes: [{ match: { path: "/" }, service: "s" }] },
    { watch: true },
  );
  t.teardown(async () => {
    await gw.close();
    await a.close();
    await b.close();
  });
  writeFileSync(
    gw.file,
    stringify({
      server: { listen: { host: "127.0.0.1", port: 0 } },
      admin: { listen: { host: "127.0.0.1", port: 0 } },
      telemetry: { logs: { level: "warn" } },
      services: { s: serviceAt(b.url) },
      routes: [{ match: { path: "/" }, service: "s" }],
    }),
  );
  let body = "";
  for (let i = 0; i < 40 && body !== "B"; i++) {
    await sleep(100);
    body = await (await fetch(`${gw.url}/`)).text();
  }
  t.equal(body, "B");
});

t.test(
  "SIGTERM: not ready at once, in-flight requests finish, new connections refused, exit 0",
  async (t) => {
    const up = await startUpstream((req, res) => {
      if (req.url === "/slow") return void setTimeout(() => res.end("done"), 800);
      res.end("ok");
    });
    const port = await freePort();
    const admin = await freePort();
    const file = writeConfig({
      server: { listen: { host: "127.0.0.1", port }, drainTimeout: "5s" },
      admin: { listen: { host: "127.0.0.1", port: admin } },
      services: { s: serviceAt(up.url) },
      routes: [{ match: { path: "/" }, service: "s" }],
      telemetry: { logs: { level: "info", access: false } },
    });
    const gw = spawnEdgeway(["gateway", "--config", file]);
    t.teardown(async () => {
      await gw.stop("SIGKILL");
      await up.close();
    });
    await waitReady(`http://127.0.0.1:${admin}`);
    const slow = fetch(`http://127.0.0.1:${port}/slow`).then((r) => r.text());
    await sleep(100);
    gw.child.kill("SIGTERM");
    await sleep(100);
    const ready = await fetch(`http://127.0.0.1:${admin}/readyz`).catch(() => undefined);
    t.equal(ready?.status, 503, "readyz says draining");
    t.same(await ready?.json(), { status: "draining" });
    await t.rejects(
      fetch(`http://127.0.0.1:${port}/x`, { headers: { connection: "close" } }),
      "no new connections",
    );
    t.equal(await slow, "done", "the in-flight request completed");
    t.equal(await gw.exited, 0);
    t.match(gw.output(), /draining/);
  },
);

t.test("SIGTERM: the drain deadline cuts requests that take too long", async (t) => {
  const up = await startUpstream(() => {});
  const port = await freePort();
  const admin = await freePort();
  const file = writeConfig({
    server: { listen: { host: "127.0.0.1", port }, drainTimeout: "300ms" },
    admin: { listen: { host: "127.0.0.1", port: admin } },
    services: { s: serviceAt(up.url) },
    routes: [{ match: { path: "/" }, service: "s" }],
  });
  const gw = spawnEdgeway(["gateway", "--config", file]);
  t.teardown(async () => {
    await gw.stop("SIGKILL");
    await up.close();
  });
  await waitReady(`http://127.0.0.1:${admin}`);
  const hung = fetch(`http://127.0.0.1:${port}/hang`).then(
    (r) => r.status,
    () => "cut",
  );
  await sleep(100);
  const started = Date.now();
  gw.child.kill("SIGTERM");
  t.equal(await gw.exited, 0);
  t.ok(Date.now() - started < 3000, "exits soon after the deadline");
  t.equal(await hung, "cut");
});

t.test("bad config: exit code 1 with the key path and reason", async (t) => {
  const cases: [string, RegExp][] = [
    [
      stringify({
        services: { s: serviceAt("http://127.0.0.1:1") },
        routes: [{ service: "s" }, { service: "s" }, { service: "s", timeouts: { connect: "fast" } }],
      }),
      /routes\[2\]\.timeouts\.connect: expected a duration like "2s", got "fast"/,
    ],
    [
      stringify({ services: { s: serviceAt("http://127.0.0.1:1") }, routes: [{ service: "t" }] }),
      /routes\[0\]\.service: no service named "t"/,
    ],
    [
      stringify({ services: { s: { endpoints: { r: [{ url: "ftp://x" }] } } }, routes: [{ service: "s" }] }),
      /services\.s\.endpoints\.r\[0\]\.url/,
    ],
    [
      stringify({ services: {}, routes: [], colour: "blue" }),
      /colour: unknown key|routes: at least one route/,
    ],
    [
      stringify({
        services: { s: serviceAt("http://127.0.0.1:1") },
        routes: [{ service: "s", filters: [{ nope: {} }] }],
      }),
      /routes\[0\]\.filters\[0\]: unknown filter "nope"/,
    ],
    [
      stringify({
        services: { s: serviceAt("http://127.0.0.1:1") },
        routes: [{ service: "s", filters: [{ headers: { request: { set: { "bad name": "x" } } } }] }],
      }),
      /routes\[0\]\.filters\[0\]\.headers\.request\.set\.bad name: not a valid header name/,
    ],
    ["routes: [\n  - a: 1\n  - b\n", /line \d+/],
    ["server:\n  workers: many\nservices: {}\nroutes: []\n", /server\.workers/],
    [
      stringify({
        server: { scavengeAfter: "lots" },
        services: { s: serviceAt("http://127.0.0.1:1") },
        routes: [{ service: "s" }],
      }),
      /server\.scavengeAfter: expected a size like "10MiB", got "lots"/,
    ],
  ];
  for (const [text, expected] of cases) {
    const file = writeConfig(text);
    const run = spawnEdgeway(["gateway", "check", "--config", file]);
    const code = await run.exited;
    t.equal(code, 1, `exit 1 for ${expected}`);
    t.match(run.output(), expected);
    t.notMatch(run.output(), /\n\s+at /, "no stack trace");
  }
  const missing = spawnEdgeway(["gateway", "--config", "/nonexistent/gateway.yaml"]);
  t.equal(await missing.exited, 1);
  t.match(missing.output(), /cannot read/);
});

t.test("the embedded default config: npm start's demo round trip", async (t) => {
  // The shipped file, only with free ports, so the test never collides with a running gateway.
  const { readFileSync } = await import("node:fs");
  const { parse } = await import("yaml");
  const cfg = parse(readFileSync(new URL("../../../config/gateway.yaml", import.meta.url), "utf8"));
  const [port, admin, demo] = [await freePort(), await freePort(), await freePort()];
  cfg.server.listen.port = port;
  cfg.admin.listen.port = admin;
  cfg.demoOrigin.listen.port = demo;
  cfg.services.demo.endpoints.local[0].url = `http://127.0.0.1:${demo}`;
  const gw = spawnEdgeway(["gateway", "--config", writeConfig(cfg)]);
  t.teardown(() => gw.stop());
  await waitReady(`http://127.0.0.1:${admin}`);
  const res = await fetch(`http://127.0.0.1:${port}/hello`);
  t.equal(res.status, 200);
  t.equal(res.headers.get("via"), "1.1 edgeway");
  t.ok(res.headers.get("x-request-id"));
  const body = (await res.json()) as { service: string; path: string; headers: Record<string, string> };
  t.equal(body.service, "edgeway-demo-origin");
  t.equal(body.path, "/hello");
  t.equal(body.headers.via, "1.1 edgeway");
  const metrics = await (await fetch(`http://127.0.0.1:${admin}/metrics`)).text();
  t.match(metrics, /edgeway_http_requests_total\{route="demo",method="GET",status_class="2xx"\} 1/);
  t.equal((await fetch(`http://127.0.0.1:${admin}/healthz`)).status, 200);
});

t.test("a port already in use: exit 1 with the address, no stack trace", async (t) => {
  const { createServer } = await import("node:net");
  const taken = createServer();
  await new Promise<void>((r) => taken.listen(0, "127.0.0.1", () => r()));
  t.teardown(() => taken.close());
  const port = (taken.address() as { port: number }).port;
  const file = writeConfig({
    server: { listen: { host: "127.0.0.1", port } },
    admin: { listen: { host: "127.0.0.1", port: await freePort() } },
    services: { s: serviceAt("http://127.0.0.1:1") },
    routes: [{ service: "s" }],
  });
  const run = spawnEdgeway(["gateway", "--config", file]);
  t.equal(await run.exited, 1);
  t.match(run.output(), new RegExp(`cannot listen on 127.0.0.1:${port}: EADDRINUSE`));
  t.notMatch(run.output(), /\n\s+at /, "no stack trace");
});
