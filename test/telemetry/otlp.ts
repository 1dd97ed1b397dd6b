/**
 * A real OTLP/HTTP trace receiver on loopback for tests: accepts POST /v1/traces in the OTLP JSON
 * encoding (what @opentelemetry/exporter-trace-otlp-http sends), decodes it and keeps flat spans.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";

export interface ReceivedSpan {
  traceId: string;
  spanId: string;
  parentSpanId: string;
  traceState: string;
  name: string;
  /** OTLP SpanKind: 1 internal, 2 server, 3 client. */
  kind: number;
  attributes: Record<string, unknown>;
  /** OTLP status code: 0 unset, 1 ok, 2 error. */
  status: number;
  resource: Record<string, unknown>;
  durationMs: number;
}

export interface OtlpReceiver {
  url: string;
  spans: ReceivedSpan[];
  contentTypes: Set<string>;
  /** Resolves once `predicate(spans)` holds (polls), or rejects after `ms`. */
  waitFor(predicate: (spans: ReceivedSpan[]) => boolean, ms?: number): Promise<ReceivedSpan[]>;
  /** Resolves once no span has arrived for `quietMs` (all exporters flushed). */
  settle(quietMs?: number, maxMs?: number): Promise<ReceivedSpan[]>;
  close(): Promise<void>;
}

type AnyValue = {
  stringValue?: string;
  intValue?: string | number;
  doubleValue?: number;
  boolValue?: boolean;
  arrayValue?: { values?: AnyValue[] };
};

function value(v: AnyValue | undefined): unknown {
  if (!v) return undefined;
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.intValue !== undefined) return Number(v.intValue);
  if (v.doubleValue !== undefined) return v.doubleValue;
  if (v.boolValue !== undefined) return v.boolValue;
  if (v.arrayValue) return (v.arrayValue.values ?? []).map(value);
  return undefined;
}

function attrs(list: { key: string; value: AnyValue }[] | undefined): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  for (const a of list ?? []) o[a.key] = value(a.value);
  return o;
}

/** Ids come as hex in the JSON encoding; accept base64 too (the proto3 JSON mapping of bytes). */
function id(v: string | undefined): string {
  if (!v) return "";
  return /^[0-9a-f]+$/i.test(v) && (v.length === 32 || v.length === 16)
    ? v.toLowerCase()
    : Buffer.from(v, "base64").toString("hex");
}

function nanos(v: string | number | { low: number; high: number }): number {
  if (typeof v === "object") return v.high * 2 ** 32 + (v.low >>> 0);
  return Number(v);
}

export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = [];
  const contentTypes = new Set<string>();
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const type = String(req.headers["content-type"] ?? "");
      contentTypes.add(type);
      if (req.method !== "POST" || req.url !== "/v1/traces" || !type.startsWith("application/json")) {
        res.writeHead(415).end();
        return;
      }
      const body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
      for (const rs of body.resourceSpans ?? []) {
        const resource = attrs(rs.resource?.attributes);
        for (const ss of rs.scopeSpans ?? []) {
          for (const s of ss.spans ?? []) {
            spans.push({
              traceId: id(s.traceId),
              spanId: id(s.spanId),
              parentSpanId: id(s.parentSpanId),
              traceState: s.traceState ?? "",
              name: s.name,
              kind: s.kind,
              attributes: attrs(s.attributes),
              status: s.status?.code ?? 0,
              resource,
              durationMs: (nanos(s.endTimeUnixNano) - nanos(s.startTimeUnixNano)) / 1e6,
            });
          }
        }
      }
      res.writeHead(200, { "content-type": "application/json" }).end("{}");
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/v1/traces`,
    spans,
    contentTypes,
    async waitFor(predicate, ms = 10_000) {
      const deadline = Date.now() + ms;
      while (!predicate(spans)) {
        if (Date.now() > deadline) throw new Error(`spans did not arrive in time (have ${spans.length})`);
        await new Promise((r) => setTimeout(r, 25));
      }
      return spans;
    },
    async settle(quietMs = 500, maxMs = 15_000) {
      const deadline = Date.now() + maxMs;
      let seen = -1;
      while (seen !== spans.length && Date.now() < deadline) {
        seen = spans.length;
        await new Promise((r) => setTimeout(r, quietMs));
      }
      return spans;
    },
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
