import { randomBytes } from "node:crypto";
import t from "tap";
import { serviceAt, startGateway } from "../helpers/gateway.ts";
import { startOtlpReceiver } from "./otlp.ts";
import { startTracedService } from "./traced-service.ts";

const SERVER = 2;
const CLIENT = 3;

t.test(
  "tracing.keep: errors and slow requests are exported even when the ratio samples nothing",
  async (t) => {
    const otlp = await startOtlpReceiver();
    const up = await startTracedService("backend", otlp.url, (req, res) => {
      if (req.url?.startsWith("/fail")) {
        res.statusCode = 503;
        res.end("down");
      } else if (req.url?.startsWith("/slow")) setTimeout(() => res.end("late"), 400);
      else res.end("ok");
    });
    const gw = await startGateway({
      services: { backend: serviceAt(up.url) },
      routes: [{ name: "backend", match: { path: "/" }, service: "backend" }],
      telemetry: {
        tracing: {
          endpoint: otlp.url,
          sampleRatio: 0,
          batchDelay: 50,
          keep: { errors: true, slowerThan: "300ms" },
        },
      },
    });
    t.teardown(async () => {
      await gw.close();
      await up.close();
      await otlp.close();
    });
    const call = async (path: string, headers: Record<string, string> = {}) => {
      const r = await fetch(gw.url + path, { headers });
      await r.text();
      return r.status;
    };

    for (let i = 0; i < 30; i++) t.equal(await call(`/fast/${i}`), 200);
    for (let i = 0; i < 3; i++) t.equal(await call(`/fail/${i}`), 503);
    for (let i = 0; i < 2; i++) t.equal(await call(`/slow/${i}`), 200);
    const clientSampled = randomBytes(16).toString("hex");
    t.equal(
      await call("/fast/sampled", {
        traceparent: `00-${clientSampled}-${randomBytes(8).toString("hex")}-01`,
      }),
      200,
    );

    const gwSpans = () => otlp.spans.filter((s) => s.resource["service.name"] === "edgeway-gateway");
    await otlp.waitFor(() => gwSpans().filter((s) => s.kind === SERVER).length >= 6);
    await otlp.settle();
    const servers = gwSpans().filter((s) => s.kind === SERVER);
    const paths = servers.map((s) => String(s.attributes["url.path"])).sort();
    t.same(
      paths,
      ["/fail/0", "/fail/1", "/fail/2", "/fast/sampled", "/slow/0", "/slow/1"],
      "only kept or sampled",
    );

    for (const s of servers) {
      const path = String(s.attributes["url.path"]);
      const kept = s.attributes["edgeway.sampling.kept"];
      if (path.startsWith("/fail")) t.equal(kept, "error", `${path} kept as an error`);
      else if (path.startsWith("/slow")) t.equal(kept, "slow", `${path} kept as slow`);
      else t.equal(kept, undefined, "a sampled trace is exported as usual");
      const clients = gwSpans().filter((c) => c.kind === CLIENT && c.parentSpanId === s.spanId);
      t.equal(clients.length, 1, `${path}: the upstream attempt's span is kept with its root`);
      t.equal(clients[0]?.traceId, s.traceId);
    }

    // Downstream services saw "not sampled" for the kept-after-the-fact traces.
    const fails = up.received.filter((r) => r.url.startsWith("/fail"));
    t.ok(
      fails.every((r) => r.traceparent?.endsWith("-00")),
      "kept traces were unsampled downstream",
    );
    const backendSpans = otlp.spans.filter((s) => s.resource["service.name"] === "backend");
    t.same(
      backendSpans.map((s) => s.traceId),
      [clientSampled],
      "the upstream records only the trace sampled at the head",
    );
  },
);
