/**
 * A small real HTTP service that takes part in traces like an instrumented microservice would: it
 * continues the W3C trace it receives (parent-based: it records only what its caller sampled), and
 * can call a next hop with the context injected. Its spans go to the same OTLP receiver.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import {
  type Context,
  defaultTextMapGetter,
  defaultTextMapSetter,
  ROOT_CONTEXT,
  SpanKind,
  type Tracer,
  trace,
} from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { resourceFromAttributes } from "@opentelemetry/resources";
import {
  AlwaysOnSampler,
  NodeTracerProvider,
  ParentBasedSampler,
  SimpleSpanProcessor,
} from "@opentelemetry/sdk-trace-node";

const propagator = new W3CTraceContextPropagator();

export interface TracedService {
  url: string;
  /** traceparent/tracestate headers as received, in order. */
  received: { traceparent?: string; tracestate?: string; url: string }[];
  close(): Promise<void>;
}

export type TracedHandler = (
  req: IncomingMessage,
  res: ServerResponse,
  ctx: Context,
  call: (url: string) => Promise<Response>,
) => void | Promise<void>;

export async function startTracedService(
  serviceName: string,
  collectorUrl: string,
  handler: TracedHandler,
): Promise<TracedService> {
  const provider = new NodeTracerProvider({
    resource: resourceFromAttributes({ "service.name": serviceName }),
    sampler: new ParentBasedSampler({ root: new AlwaysOnSampler() }),
    spanProcessors: [new SimpleSpanProcessor(new OTLPTraceExporter({ url: collectorUrl }))],
  });
  const tracer: Tracer = provider.getTracer(serviceName);
  const received: TracedService["received"] = [];
  const server: Server = createServer((req, res) => {
    received.push({
      traceparent: req.headers.traceparent as string | undefined,
      tracestate: req.headers.tracestate as string | undefined,
      url: req.url ?? "",
    });
    const parent = propagator.extract(ROOT_CONTEXT, req.headers, defaultTextMapGetter);
    const span = tracer.startSpan(
      `${req.method} ${req.url}`,
      { kind: SpanKind.SERVER, attributes: { "http.request.method": req.method, "url.path": req.url } },
      parent,
    );
    const ctx = trace.setSpan(parent, span);
    res.once("close", () => {
      span.setAttribute("http.response.status_code", res.statusCode);
      span.end();
    });
    const call = async (url: string) => {
      const client = tracer.startSpan("GET", { kind: SpanKind.CLIENT, attributes: { "url.full": url } }, ctx);
      const headers: Record<string, string> = {};
      propagator.inject(trace.setSpan(ctx, client), headers, defaultTextMapSetter);
      try {
        const r = await fetch(url, { headers });
        client.setAttribute("http.response.status_code", r.status);
        return r;
      } finally {
        client.end();
      }
    };
    void Promise.resolve(handler(req, res, ctx, call)).catch((err: Error) => {
      res.statusCode = 500;
      res.end(err.message);
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    received,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      await provider.shutdown();
    },
  };
}
