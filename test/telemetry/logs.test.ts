import { writeFileSync } from "node:fs";
import t from "tap";
import { stringify } from "yaml";
import { accessLogPolicy, keepAccessLine } from "../../gateway/telemetry/access.ts";
import { redactTarget, screenLogFields } from "../../gateway/telemetry/redact.ts";
import { createLogger, isoTimeByMillisecond } from "../../lib/telemetry/index.ts";
import { LogCapture, serviceAt, startGateway, startUpstream } from "../helpers/gateway.ts";
import { startOtlpReceiver } from "./otlp.ts";

const SECRETS = {
  bearer: "eyJhbGciOiJSUzI1NiJ9.SECRET-BEARER",
  cookie: "SECRET-COOKIE-SESSION",
  refresh: "SECRET-REFRESH-TOKEN",
  clientSecret: "SECRET-CLIENT-SECRET",
  queryToken: "SECRET-QUERY-TOKEN",
  setCookie: "SECRET-SET-COOKIE",
  basic: Buffer.from("alice:SECRET-PASSWORD").toString("base64"),
};
const leaked = (text: string) => Object.values(SECRETS).filter((s) => text.includes(s));

t.test(
  "one JSON access line per request with ids, route, upstream, status, durations and bytes; no secrets",
  async (t) => {
    const otlp = await startOtlpReceiver();
    const up = await startUpstream((req, res) => {
      req.resume();
      req.on("end", () => {
        res.setHeader("set-cookie", `sid=${SECRETS.setCookie}; HttpOnly`);
        res.end("0123456789");
      });
    });
    const gw = await startGateway({
      services: { auth: serviceAt(up.url), gone: serviceAt("http://127.0.0.1:9") },
      routes: [
        { name: "gone", match: { path: "/gone" }, service: "gone", retries: { attempts: 0 } },
        { name: "token", match: { path: "/oauth" }, service: "auth" },
      ],
      telemetry: {
        logs: { level: "info", access: true },
        tracing: { endpoint: otlp.url, sampleRatio: 1, batchDelay: 50 },
      },
    });
    t.teardown(async () => {
      await gw.close();
      await up.close();
      await otlp.close();
    });

    const form = `grant_type=refresh_token&refresh_token=${SECRETS.refresh}&client_id=web&client_secret=${SECRETS.clientSecret}`;
    const headers = {
      authorization: `Bearer ${SECRETS.bearer}`,
      cookie: `session=${SECRETS.cookie}; theme=dark`,
      "content-type": "application/x-www-form-urlencoded",
      "x-request-id": "req-logs-1",
    };
    const res = await fetch(`${gw.url}/oauth/token?access_token=${SECRETS.queryToken}&page=2`, {
      method: "POST",
      headers,
      body: form,
    });
    t.equal(res.status, 200);
    t.equal(await res.text(), "0123456789");
    // The same secrets toward an unreachable upstream: the error log line must not carry them either.
    const bad = await fetch(`${gw.url}/gone/token?token=${SECRETS.queryToken}`, {
      method: "POST",
      headers: { ...headers, authorization: `Basic ${SECRETS.basic}`, "x-request-id": "req-logs-2" },
      body: form,
    });
    t.equal(bad.status, 502);
    await bad.text();
    await new Promise((r) => setTimeout(r, 50));

    const access = gw.logs.lines.filter((l) => l.type === "access");
    t.equal(access.length, 2, "one access line per request");
    const ok = access.find((l) => l.request_id === "req-logs-1")!;
    t.match(ok, {
      level: "info",
      msg: "request",
      name: "edgeway-gateway",
      time: String,
      request_id: "req-logs-1",
      trace_id: /^[0-9a-f]{32}$/,
      method: "POST",
      path: "/oauth/token?access_token=[redacted]&page=2",
      route: "token",
      upstream: { service: "auth", endpoint: up.url, region: "local", attempts: 1 },
      status: 200,
      duration_ms: Number,
      upstream_ms: Number,
      bytes_in: Buffer.byteLength(form),
      client: "127.0.0.1",
    });
    t.ok((ok.bytes_out as number) > 10, `bytes_out ${ok.bytes_out} counts headers and body`);
    t.ok((ok.upstream_ms as number) <= (ok.duration_ms as number));
    const spans = await otlp.waitFor((s) => s.some((x) => x.traceId === ok.trace_id));
    t.ok(spans.length > 0, "the access line's trace id is the exported trace");

    const failed = access.find((l) => l.request_id === "req-logs-2")!;
    t.match(failed, { status: 502, route: "gone", upstream: { service: "gone" } });
    const errorLine = gw.logs.lines.find((l) => l.level === "warn" && l.request_id === "req-logs-2");
    t.match(errorLine, {
      code: "upstream_unreachable",
      route: "gone",
      trace_id: failed.trace_id,
      err: { message: /ECONNREFUSED/ },
    });

    const all = JSON.stringify(gw.logs.lines);
    t.same(leaked(all), [], "no Authorization, cookie, token field or token query value in any log line");
  },
);

t.test("the logger redacts credentials wherever a caller puts them", async (t) => {
  const out = new LogCapture();
  const log = createLogger("redact-test", "debug", out);
  log.info({ authorization: `Bearer ${SECRETS.bearer}`, cookie: SECRETS.cookie }, "top level");
  log.info(
    {
      req: { headers: { authorization: `Basic ${SECRETS.basic}`, cookie: SECRETS.cookie, accept: "*/*" } },
      res: { headers: { "set-cookie": [SECRETS.setCookie] } },
    },
    "request/response objects",
  );
  log.warn(
    {
      body: {
        grant_type: "refresh_token",
        refresh_token: SECRETS.refresh,
        client_secret: SECRETS.clientSecret,
      },
    },
    "a token form",
  );
  log.error(
    {
      err: Object.assign(new Error("upstream failed"), {
        headers: { authorization: `Bearer ${SECRETS.bearer}` },
      }),
    },
    "error with request headers",
  );
  log.info(
    { headers: { "proxy-authorization": `Basic ${SECRETS.basic}` }, password: SECRETS.refresh },
    "misc",
  );
  log.flush();
  await new Promise((r) => setTimeout(r, 20));
  t.equal(out.lines.length, 5);
  t.same(leaked(JSON.stringify(out.lines)), []);
  t.equal(
    (out.lines[1]!.req as { headers: Record<string, string> }).headers.accept,
    "*/*",
    "other fields stay",
  );
  t.equal((out.lines[2]!.body as Record<string, string>).grant_type, "refresh_token");
  t.match(out.lines[0], { authorization: "[redacted]" });
});

t.test(
  "levels come from config: at error level there are no access or warn lines, errors remain",
  async (t) => {
    const up = await startUpstream((_req, res) => res.end("ok"));
    const gw = await startGateway({
      services: { s: serviceAt(up.url) },
      routes: [{ match: { path: "/" }, service: "s" }],
      telemetry: { logs: { level: "error", access: true } },
    });
    t.teardown(async () => {
      await gw.close();
      await up.close();
    });
    await (await fetch(`${gw.url}/x`)).text();
    writeFileSync(gw.file, stringify({ routes: [] }));
    t.equal(await gw.gw.reload(), false);
    await new Promise((r) => setTimeout(r, 20));
    t.equal(gw.logs.lines.filter((l) => l.type === "access").length, 0, "info-level access lines are off");
    t.ok(gw.logs.lines.length > 0 && gw.logs.lines.every((l) => l.level === "error" || l.level === "fatal"));
    t.ok(
      gw.logs.lines.some((l) => l.msg === "configuration reload failed; keeping the running configuration"),
    );
  },
);

t.test("redactTarget: credential-like query values go, the rest stays", async (t) => {
  const cases: [string, string][] = [
    ["/a/b", "/a/b"],
    ["/a?page=2&sort=asc", "/a?page=2&sort=asc"],
    ["/cb?code=abc123&state=xyz", "/cb?code=[redacted]&state=xyz"],
    ["/x?access_token=t1&id_token=t2", "/x?access_token=[redacted]&id_token=[redacted]"],
    ["/x?API_KEY=k&apikey=k2&api-key=k3", "/x?API_KEY=[redacted]&apikey=[redacted]&api-key=[redacted]"],
    ["/s3?X-Amz-Signature=abc&X-Amz-Date=1", "/s3?X-Amz-Signature=[redacted]&X-Amz-Date=1"],
    ["/x?password=p&user=u", "/x?password=[redacted]&user=u"],
    ["/x?sessionid=s;token=t", "/x?sessionid=[redacted];token=[redacted]"],
    ["/x?token=", "/x?token=[redacted]"],
    ["/x?tokenless", "/x?tokenless"],
  ];
  for (const [input, want] of cases) t.equal(redactTarget(input), want, input);
  const plain = "/no/query";
  t.equal(redactTarget(plain), plain);
});

t.test("screenLogFields: a filter's credential-like field is replaced, others pass uncopied", async (t) => {
  const ok = { cache: "hit", auth: "ok", auth_sub: "user-1" };
  t.equal(screenLogFields(ok), ok, "same object when nothing matches");
  const bad = { cache: "hit", refresh_token: "SECRET", upstreamAuthorization: "Bearer x" };
  t.same(screenLogFields(bad), {
    cache: "hit",
    refresh_token: "[redacted]",
    upstreamAuthorization: "[redacted]",
  });
  t.equal(bad.refresh_token, "SECRET", "the exchange's own object is not modified");
});

t.test("log times are ISO 8601, formatted once per millisecond", async (t) => {
  const first = isoTimeByMillisecond();
  t.match(first, /^,"time":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"$/, "pino's isoTime format");
  const at = Date.parse(JSON.parse(`{${first.slice(1)}}`).time);
  t.ok(Math.abs(at - Date.now()) < 1000, "the current time");
  const later = await new Promise<string>((r) => setTimeout(() => r(isoTimeByMillisecond()), 5));
  t.not(later, first, "a later millisecond gets its own time");
  let same: [string, string];
  for (;;) {
    const before = Date.now();
    same = [isoTimeByMillisecond(), isoTimeByMillisecond()];
    if (Date.now() === before) break;
  }
  t.equal(same[0], same[1], "the same millisecond reuses the string");
});

t.test("access-line sampling: failed and slow requests always, a share of the rest", async (t) => {
  const policy = (sample: number, slowerThanMs?: number) =>
    accessLogPolicy({ access: true, accessSample: sample, accessSlowerThan: slowerThanMs });
  const draws = (value: number) => () => value;
  t.ok(keepAccessLine(policy(1), 200, 1, draws(0.99)), "sample 1: every line, no draw");
  t.notOk(keepAccessLine(accessLogPolicy({ access: false, accessSample: 1 }), 500, 1), "access off: none");
  for (const status of [400, 404, 499, 502, 503]) {
    t.ok(keepAccessLine(policy(0), status, 1, draws(0.99)), `status ${status} is always logged`);
  }
  t.notOk(keepAccessLine(policy(0), 200, 5000, draws(0)), "sample 0 and no slow bound: no success line");
  t.ok(keepAccessLine(policy(0, 1000), 200, 1000, draws(0.99)), "at the slow bound: logged");
  t.notOk(keepAccessLine(policy(0, 1000), 200, 999, draws(0)), "below it: not");
  t.ok(keepAccessLine(policy(0.1), 304, 1, draws(0.05)), "a draw under the share: logged");
  t.notOk(keepAccessLine(policy(0.1), 304, 1, draws(0.1)), "at or over it: not");

  const up = await startUpstream((req, res) => {
    if (req.url === "/slow") setTimeout(() => res.end("slow"), 150);
    else if (req.url === "/missing") res.writeHead(404).end();
    else res.end("ok");
  });
  const gw = await startGateway({
    services: { s: serviceAt(up.url) },
    routes: [{ match: { path: "/" }, service: "s" }],
    telemetry: { logs: { level: "info", access: true, accessSample: 0, accessSlowerThan: "100ms" } },
  });
  t.teardown(async () => {
    await gw.close();
    await up.close();
  });
  for (const path of ["/a", "/b", "/missing", "/slow", "/c"]) await (await fetch(`${gw.url}${path}`)).text();
  await new Promise((r) => setTimeout(r, 50));
  const logged = gw.logs.lines.filter((l) => l.type === "access").map((l) => l.path);
  t.same(logged, ["/missing", "/slow"], "only the failed and the slow request");
});

t.test("a bad accessSample names the key", async (t) => {
  await t.rejects(
    startGateway({
      services: { s: serviceAt("http://127.0.0.1:9") },
      routes: [{ match: { path: "/" }, service: "s" }],
      telemetry: { logs: { accessSample: 2 } },
    }),
    /telemetry\.logs\.accessSample/,
  );
});
