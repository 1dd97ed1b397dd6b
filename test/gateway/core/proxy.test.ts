import { connect } from "node:net";
import t, { type Test } from "tap";
import { request } from "undici";
import { serviceAt, startGateway, startUpstream, type TestUpstream } from "../../helpers/gateway.ts";

async function rawRequest(port: number, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(port, "127.0.0.1", () => s.write(text));
    let out = "";
    s.on("data", (d) => {
      out += d.toString("latin1");
    });
    s.on("end", () => resolve(out));
    s.on("close", () => resolve(out));
    s.on("error", reject);
    setTimeout(() => {
      s.destroy();
      resolve(out);
    }, 3000).unref();
  });
}

async function echoGateway(
  t: Test,
  routeExtra: Record<string, unknown> = {},
  upstream?: TestUpstream,
  server: Record<string, unknown> = {},
) {
  const up =
    upstream ??
    (await startUpstream((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c) => chunks.push(c));
      req.on("end", () => {
        res.setHeader("content-type", "application/json");
        res.end(
          JSON.stringify({ url: req.url, headers: req.headers, body: Buffer.concat(chunks).toString() }),
        );
      });
    }));
  const gw = await startGateway({
    server,
    services: { s: serviceAt(up.url) },
    routes: [{ match: { path: "/" }, service: "s", ...routeExtra }],
  });
  t.teardown(async () => {
    await gw.close();
    await up.close();
  });
  return { gw, up, port: Number(new URL(gw.url).port) };
}

t.test("hop-by-hop headers are removed both ways, including those named in Connection", async (t) => {
  const up = await startUpstream((req, res) => {
    res.writeHead(200, {
      connection: "x-secret-hop, keep-alive",
      "x-secret-hop": "1",
      "keep-alive": "timeout=5",
      "proxy-authenticate": "Basic",
      "content-type": "application/json",
    });
    res.end(JSON.stringify(req.headers));
  });
  const { port } = await echoGateway(t, {}, up);
  const out = await rawRequest(
    port,
    "GET /h HTTP/1.1\r\nHost: a\r\nConnection: close, x-client-hop\r\nX-Client-Hop: drop me\r\n" +
      "Proxy-Authorization: Basic abc\r\nX-Keep: yes\r\nTE: gzip\r\nUpgrade: h2c\r\n\r\n",
  );
  const [head, body] = out.split("\r\n\r\n");
  const seen = JSON.parse(body!.slice(body!.indexOf("{"), body!.lastIndexOf("}") + 1)) as Record<
    string,
    string
  >;
  t.notOk(seen["x-client-hop"], "named in Connection");
  t.notOk(seen["proxy-authorization"]);
  t.notOk(seen.te);
  t.notOk(seen.upgrade);
  t.equal(seen["x-keep"], "yes");
  t.notMatch(head, /x-secret-hop/i);
  t.notMatch(head, /proxy-authenticate/i);
  t.notMatch(head, /keep-alive: timeout=5/i);
});

t.test(
  "X-Forwarded-*, Forwarded and Via are appended for a trusted proxy; a valid X-Request-Id is kept",
  async (t) => {
    const { gw } = await echoGateway(t, {}, undefined, { trustForwardedFrom: ["127.0.0.1"] });
    const res = await request(`${gw.url}/f`, {
      headers: {
        "x-forwarded-for": "203.0.113.9",
        forwarded: "for=203.0.113.9",
        via: "1.1 cdn",
        "x-request-id": "req-12345678",
      },
    });
    const body = (await res.body.json()) as { headers: Record<string, string> };
    t.equal(body.headers["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    t.equal(
      body.headers.forwarded,
      `for=203.0.113.9, for=127.0.0.1;proto=http;host="${new URL(gw.url).host}"`,
    );
    t.equal(body.headers.via, "1.1 cdn, 1.1 edgeway");
    t.equal(body.headers["x-forwarded-proto"], "http");
    t.equal(body.headers["x-forwarded-host"], new URL(gw.url).host);
    t.equal(body.headers["x-request-id"], "req-12345678");
    t.equal(res.headers["x-request-id"], "req-12345678");
    const bad = await request(`${gw.url}/f`, { headers: { "x-request-id": "bad id with spaces" } });
    const b2 = (await bad.body.json()) as { headers: Record<string, string> };
    t.match(b2.headers["x-request-id"], /^[0-9a-f-]{36}$/, "an invalid id is replaced");
  },
);

t.test("forwarding headers from an untrusted client are dropped, not extended", async (t) => {
  const { gw } = await echoGateway(t);
  const res = await request(`${gw.url}/f`, {
    headers: { "x-forwarded-for": "203.0.113.9", forwarded: "for=203.0.113.9", "x-forwarded-proto": "https" },
  });
  const body = (await res.body.json()) as { headers: Record<string, string> };
  t.equal(body.headers["x-forwarded-for"], "127.0.0.1", "the spoofed address is gone");
  t.equal(body.headers.forwarded, `for=127.0.0.1;proto=http;host="${new URL(gw.url).host}"`);
  t.equal(body.headers["x-forwarded-proto"], "http");
});

t.test("strip-prefix and rewrite-prefix", async (t) => {
  const up = await startUpstream((req, res) => res.end(req.url));
  const gw = await startGateway({
    services: { s: serviceAt(up.url) },
    routes: [
      { match: { path: "/strip" }, service: "s", stripPrefix: true },
      { match: { path: "/old" }, service: "s", rewritePrefix: "/new" },
    ],
  });
  t.teardown(async () => {
    await gw.close();
    await up.close();
  });
  t.equal(await (await fetch(`${gw.url}/strip/a?b=1`)).text(), "/a?b=1");
  t.equal(await (await fetch(`${gw.url}/strip`)).text(), "/");
  t.equal(await (await fetch(`${gw.url}/strip?q`)).text(), "/?q");
  t.equal(await (await fetch(`${gw.url}/old/x`)).text(), "/new/x");
});

t.test("HEAD, 204 and 304 carry no body; chunked bodies and trailers pass through", async (t) => {
  const up = await startUpstream((req, res) => {
    if (req.url === "/204") return void res.writeHead(204).end();
    if (req.url === "/304") return void res.writeHead(304, { etag: '"v1"' }).end();
    if (req.url === "/trailers") {
      res.writeHead(200, { trailer: "x-checksum", "content-type": "text/plain" });
      res.write("part1,");
      res.write("part2");
      res.addTrailers({ "x-checksum": "abc123" });
      return void res.end();
    }
    res.writeHead(200, { "content-type": "text/plain", "content-length": "5" });
    res.end(req.method === "HEAD" ? undefined : "hello");
  });
  const { port } = await echoGateway(t, {}, up);
  const head = await rawRequest(port, "HEAD /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
  t.match(head, /^HTTP\/1.1 200/);
  t.match(head, /content-length: 5/i);
  t.notMatch(head, /hello/);
  const r204 = await rawRequest(port, "GET /204 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
  t.match(r204, /^HTTP\/1.1 204/);
  t.notMatch(r204, /transfer-encoding/i);
  const r304 = await rawRequest(port, "GET /304 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
  t.match(r304, /^HTTP\/1.1 304/);
  t.match(r304, /etag: "v1"/i);
  const tr = await rawRequest(
    port,
    "GET /trailers HTTP/1.1\r\nHost: a\r\nTE: trailers\r\nConnection: close\r\n\r\n",
  );
  t.match(tr, /transfer-encoding: chunked/i);
  t.match(tr, /part1,\r\n5\r\npart2/, "chunks pass through as sent");
  t.match(tr, /x-checksum: abc123/i, "the trailer reaches the client");
});

t.test("Expect: 100-continue is answered and the body still arrives", async (t) => {
  const { port } = await echoGateway(t);
  const out = await new Promise<string>((resolve) => {
    const s = connect(port, "127.0.0.1", () => {
      s.write(
        "POST /e HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
      );
    });
    let buf = "";
    s.on("data", (d) => {
      buf += d.toString();
      if (buf.startsWith("HTTP/1.1 100") && !buf.includes("200")) s.write("ping");
    });
    s.on("close", () => resolve(buf));
  });
  t.match(out, /^HTTP\/1.1 100 Continue/);
  t.match(out, /HTTP\/1.1 200/);
  t.match(out, /"body":"ping"/);
});

t.test("request smuggling and malformed requests get 400 and are never forwarded", async (t) => {
  const { port, up } = await echoGateway(t);
  const cases: [string, string][] = [
    [
      "CL and TE together",
      "POST /s HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ],
    [
      "two different Content-Lengths",
      "POST /s HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
    ],
    ["bad bytes in a header value", "GET /s HTTP/1.1\r\nHost: a\r\nX-Bad: a\u0001b\r\n\r\n"],
    ["bad header name", "GET /s HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n"],
    ["obs-fold continuation line", "GET /s HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n 2\r\n\r\n"],
    ["TE other than chunked", "POST /s HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n"],
    ["missing Host", "GET /s HTTP/1.1\r\n\r\n"],
  ];
  for (const [name, text] of cases) {
    const out = await rawRequest(port, text);
    t.match(out, /^HTTP\/1.1 400/, name);
    t.match(out, /application\/problem\+json/, `${name}: problem body`);
  }
  const dots = await rawRequest(
    port,
    "GET /public/../admin HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
  );
  t.match(dots, /^HTTP\/1.1 400/, "dot segments");
  const absolute = await rawRequest(
    port,
    "GET http://evil/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
  );
  t.match(absolute, /^HTTP\/1.1 400/, "absolute-form target");
  t.equal(
    up.requests.filter((r) => r.url.startsWith("/s") || r.url.includes("admin")).length,
    0,
    "nothing forwarded",
  );
});

t.test("oversize headers get 431 and oversize bodies 413 (declared or chunked)", async (t) => {
  const { port, gw, up } = await echoGateway(t, { maxBodySize: "1KiB" });
  const big = await rawRequest(port, `GET /h HTTP/1.1\r\nHost: a\r\nX-Big: ${"a".repeat(20_000)}\r\n\r\n`);
  t.match(big, /^HTTP\/1.1 431/);
  t.match(big, /headers_too_large/);
  const declared = await fetch(`${gw.url}/b`, { method: "POST", body: "x".repeat(2048) });
  t.equal(declared.status, 413);
  t.equal(declared.headers.get("content-type"), "application/problem+json");
  const chunked = await rawRequest(
    port,
    `POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n800\r\n${"y".repeat(2048)}\r\n0\r\n\r\n`,
  );
  t.match(chunked, /^HTTP\/1.1 413/);
  t.equal(up.requests.filter((r) => r.url === "/b").length, 0, "a declared oversize body is never forwarded");
});

t.test("a slow client that dribbles headers is cut off with 408", async (t) => {
  const up = await startUpstream((_req, res) => res.end("ok"));
  const gw = await startGateway({
    server: { headersTimeout: "300ms" },
    services: { s: serviceAt(up.url) },
    routes: [{ match: { path: "/" }, service: "s" }],
  });
  t.teardown(async () => {
    await gw.close();
    await up.close();
  });
  const started = Date.now();
  const out = await new Promise<string>((resolve) => {
    const s = connect(Number(new URL(gw.url).port), "127.0.0.1");
    let buf = "";
    const timer = setInterval(() => s.writable && s.write("X-Drip: 1\r\n"), 50);
    s.write("GET / HTTP/1.1\r\nHost: a\r\n");
    s.on("data", (d) => {
      buf += d.toString();
    });
    s.on("close", () => {
      clearInterval(timer);
      resolve(buf);
    });
    s.on("error", () => {});
  });
  t.match(out, /^HTTP\/1.1 408/);
  t.ok(Date.now() - started < 3000, "cut off near the deadline");
});

t.test("no route → 404 problem; unknown service endpoint down → 502; ", async (t) => {
  const gw = await startGateway({
    services: { dead: serviceAt("http://127.0.0.1:9") },
    routes: [{ match: { path: "/dead" }, service: "dead", retries: { attempts: 0 } }],
  });
  t.teardown(() => gw.close());
  const nf = await fetch(`${gw.url}/nothing`);
  t.equal(nf.status, 404);
  const p = (await nf.json()) as Record<string, unknown>;
  t.equal(p.status, 404);
  t.match(p.type, /no_route$/);
  const dead = await fetch(`${gw.url}/dead`);
  t.equal(dead.status, 502);
  t.equal(dead.headers.get("content-type"), "application/problem+json");
  const body = await dead.text();
  t.notMatch(body, /at .*\.ts:\d+/, "never a stack trace");
});

t.test(
  "interim responses: 103 Early Hints and 102 Processing reach the client before the final one",
  async (t) => {
    const up = await startUpstream((req, res) => {
      if (req.url === "/102") res.writeProcessing();
      else res.writeEarlyHints({ link: "</style.css>; rel=preload; as=style" });
      setTimeout(() => res.end("final"), 20);
    });
    const { port } = await echoGateway(t, {}, up);
    const hints = await rawRequest(port, "GET /103 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    t.match(
      hints,
      /^HTTP\/1.1 103 Early Hints\r\nLink: <\/style.css>; rel=preload; as=style\r\n\r\nHTTP\/1.1 200 OK/,
    );
    t.match(hints, /final$/);
    const processing = await rawRequest(port, "GET /102 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    t.match(processing, /^HTTP\/1.1 102 Processing\r\n\r\nHTTP\/1.1 200 OK/);
    const old = await rawRequest(port, "GET /103 HTTP/1.0\r\nHost: a\r\n\r\n");
    t.match(old, /^HTTP\/1.1 200 OK/, "no interim responses for HTTP/1.0 clients");
  },
);
