import { createRequire } from "node:module";
import { hostname } from "node:os";
import {
  type Context,
  context,
  propagation,
  type TextMapGetter,
  type TextMapPropagator,
  type TextMapSetter,
  type Tracer,
  trace,
} from "@opentelemetry/api";
import type { NodeTracerProvider } from "@opentelemetry/sdk-trace-node";
import { type Logger, pino } from "pino";
import type { Registry } from "prom-client";
import type { TelemetryConfig } from "./schema.ts";
import {
  type KeepRule,
  keepRuleActive,
  RecordSampler,
  RecordUnsampledSampler,
  TailKeepProcessor,
} from "./tail-keep.ts";

const require = createRequire(import.meta.url);

/**
 * prom-client's registry and default collectors without its index module, which also loads the
 * Pushgateway client (https, tls, zlib) and the cluster aggregator: a program that uses neither (the
 * agent) saves about 4 MB. The same classes as the index exports (one module cache); prom-client 15
 * has no "exports" map, which is what makes lib/ loadable.
 */
const PromRegistry = require("prom-client/lib/registry") as typeof import("prom-client").Registry;
const collectDefaultMetrics =
  require("prom-client/lib/defaultMetrics") as typeof import("prom-client").collectDefaultMetrics;

/**
 * The tracing SDK (provider, batch processor, samplers, OTLP/HTTP exporter), loaded when a program
 * configures a tracing endpoint. Without one, tracing is off and these modules are never loaded: about
 * 3 MB of a process's memory (docs/benchmarks.md, agent section).
 */
function tracingSdk() {
  return {
    ...(require("@opentelemetry/sdk-trace-node") as typeof import("@opentelemetry/sdk-trace-node")),
    ...(require("@opentelemetry/exporter-trace-otlp-http") as typeof import("@opentelemetry/exporter-trace-otlp-http")),
    ...(require("@opentelemetry/resources") as typeof import("@opentelemetry/resources")),
  };
}

export type { TelemetryConfig } from "./schema.ts";

/**
 * The W3C trace-context propagator (traceparent, tracestate). Programs use it directly rather than the
 * global propagator, so extraction/injection does not depend on which provider registered itself first.
 */
export const traceContextPropagator: TextMapPropagator = {
  inject(ctx: Context, carrier: unknown, setter: TextMapSetter) {
    w3c().inject(ctx, carrier, setter);
  },
  extract(ctx: Context, carrier: unknown, getter: TextMapGetter): Context {
    return w3c().extract(ctx, carrier, getter);
  },
  fields: () => w3c().fields(),
};

let w3cPropagator: TextMapPropagator | undefined;
/** @opentelemetry/core (and the semantic conventions it pulls in) loads on first use (with the SDK). */
function w3c(): TextMapPropagator {
  if (w3cPropagator) return w3cPropagator;
  const { W3CTraceContextPropagator } = otelCore();
  w3cPropagator = new W3CTraceContextPropagator();
  return w3cPropagator;
}

const otelCore = () => require("@opentelemetry/core") as typeof import("@opentelemetry/core");

/** The provider registered as the process-wide OTel default (feature code uses `trace.getTracer()`). */
let globalOwner: NodeTracerProvider | undefined;

export { telemetrySchema } from "./schema.ts";

/** Everything a program needs to report about itself: one metrics registry, one tracer, one logger. */
export interface Telemetry {
  readonly registry: Registry;
  readonly tracer: Tracer;
  readonly logger: Logger;
  /**
   * The same stream and level without the redaction pass (~5 µs a line), for per-request lines whose fields
   * the caller builds from a fixed set and screens itself (the gateway's access log). Absent: use `logger`.
   */
  readonly accessLogger?: Logger;
  readonly tracingEnabled: boolean;
  shutdown(): Promise<void>;
}

export interface TelemetryOptions {
  serviceName: string;
  serviceVersion?: string;
  config: TelemetryConfig;
  /** Where log lines go; defaults to stdout (async). Tests pass a stream to capture them. */
  logDestination?: NodeJS.WritableStream;
}

/** Field names whose values are credentials (token form fields, config objects). */
const SECRET_KEYS = [
  "authorization",
  "cookie",
  "refresh_token",
  "access_token",
  "id_token",
  "client_secret",
  "password",
  "token",
  "secret",
  "apiKey",
  "api_key",
];
/** Objects callers log that may hold those fields or a header map. */
const CONTAINERS = [
  "req",
  "request",
  "res",
  "response",
  "err",
  "error",
  "body",
  "form",
  "params",
  "query",
  "config",
  "credentials",
  "auth",
  "upstream",
  "state",
];
const HEADER_KEYS = ["authorization", '["proxy-authorization"]', "cookie", '["set-cookie"]', '["x-api-key"]'];
const dot = (k: string) => (k.startsWith("[") ? k : `.${k}`);

/**
 * Paths redacted from every log line: credentials never reach the logs. All static (no `*`): pino's
 * wildcard redaction costs ~60 µs per line, static paths ~1 µs, and the access log writes one line
 * per request. The containers cover what the code base logs; log credentials nowhere else.
 */
export const REDACT_PATHS: string[] = [
  ...SECRET_KEYS,
  '["set-cookie"]',
  ...CONTAINERS.flatMap((c) => SECRET_KEYS.map((k) => `${c}.${k}`)),
  ...[
    "headers",
    ...CONTAINERS.map((c) => `${c}.headers`),
    "err.cause.headers",
    "err.response.headers",
  ].flatMap((h) => HEADER_KEYS.map((k) => `${h}${dot(k)}`)),
];

let lastMs = 0;
let lastTime = "";
/**
 * pino's isoTime, formatted once per millisecond: a busy gateway writes several access lines in the
 * same millisecond, and `toISOString()` was about 1.5 µs of each line.
 */
export function isoTimeByMillisecond(): string {
  const now = Date.now();
  if (now !== lastMs) {
    lastMs = now;
    lastTime = `,"time":"${new Date(now).toISOString()}"`;
  }
  return lastTime;
}

export function createLogger(
  name: string,
  level: string,
  destination?: NodeJS.WritableStream,
  base?: Record<string, unknown>,
  opts: { redact?: boolean } = {},
): Logger {
  return pino(
    {
      name,
      level,
      base: { pid: process.pid, ...base },
      redact: opts.redact === false ? undefined : { paths: REDACT_PATHS, censor: "[redacted]" },
      timestamp: isoTimeByMillisecond,
      formatters: { level: (label) => ({ level: label }) },
    },
    destination ?? stdoutDestination(),
  );
}

let stdout: ReturnType<typeof pino.destination> | undefined;

/**
 * Asynchronous stdout, written in blocks of 4 KiB so a busy gateway makes few write calls, and flushed
 * every 250 ms so a quiet process's lines (a reload, an error at night) do not wait for the block to fill.
 * One per process: every logger of the process shares it.
 */
function stdoutDestination(): ReturnType<typeof pino.destination> {
  if (stdout) return stdout;
  const dest = pino.destination({ dest: 1, sync: false, minLength: 4096 });
  setInterval(() => {
    try {
      dest.flush();
    } catch {
      // not ready or already closed at exit: nothing to flush
    }
  }, 250).unref();
  stdout = dest;
  return dest;
}

export function createTelemetry(opts: TelemetryOptions): Telemetry {
  const { config } = opts;
  const serviceName = config.serviceName ?? opts.serviceName;
  const registry = new PromRegistry();
  if (config.metrics.enabled && config.metrics.process) collectDefaultMetrics({ register: registry });

  const logger = createLogger(serviceName, config.logs.level, opts.logDestination, {
    region: config.region,
  });
  const accessLogger = createLogger(
    serviceName,
    config.logs.level,
    opts.logDestination,
    { region: config.region },
    { redact: false },
  );

  let provider: NodeTracerProvider | undefined;
  if (config.tracing.endpoint) {
    const {
      OTLPTraceExporter,
      BatchSpanProcessor,
      TraceIdRatioBasedSampler,
      NodeTracerProvider,
      ParentBasedSampler,
      resourceFromAttributes,
    } = tracingSdk();
    const exporter = new OTLPTraceExporter({
      url: config.tracing.endpoint,
      headers: config.tracing.headers,
      timeoutMillis: config.tracing.exportTimeout,
    });
    // A bounded queue that drops when the collector is slow: export never blocks requests.
    const batch = new BatchSpanProcessor(exporter, {
      maxQueueSize: 4096,
      maxExportBatchSize: 512,
      scheduledDelayMillis: config.tracing.batchDelay,
      exportTimeoutMillis: config.tracing.exportTimeout,
    });
    const ratio = new TraceIdRatioBasedSampler(config.tracing.sampleRatio);
    const keepRule: KeepRule = {
      errors: config.tracing.keep.errors,
      slowerThanMs: config.tracing.keep.slowerThan,
    };
    const keep = keepRuleActive(keepRule);
    provider = new NodeTracerProvider({
      resource: resourceFromAttributes(resourceAttributes(serviceName, opts.serviceVersion, config)),
      sampler: keep
        ? new ParentBasedSampler({
            root: new RecordUnsampledSampler(ratio),
            localParentNotSampled: new RecordSampler(),
          })
        : new ParentBasedSampler({ root: ratio }),
      spanProcessors: [keep ? new TailKeepProcessor(batch, keepRule) : batch],
    });
    // Export failures (collector down or hanging) are reported, at most once a minute, never thrown.
    let lastExportWarning = 0;
    otelCore().setGlobalErrorHandler((err) => {
      const now = Date.now();
      if (now - lastExportWarning < 60_000) return;
      lastExportWarning = now;
      logger.warn({ err: String((err as Error)?.message ?? err) }, "trace export failed; spans dropped");
    });
    // The first provider becomes the process default (propagator, AsyncLocalStorage context manager), so
    // `trace.getTracer()` in feature code reaches it. Later ones (tests running several) stay private.
    if (!globalOwner) {
      provider.register();
      globalOwner = provider;
    }
  }
  const tracer = provider ? provider.getTracer(serviceName, opts.serviceVersion) : trace.getTracer("noop");

  return {
    registry,
    tracer,
    logger,
    accessLogger,
    tracingEnabled: provider !== undefined,
    async shutdown() {
      if (provider && globalOwner === provider) {
        trace.disable();
        propagation.disable();
        context.disable();
        globalOwner = undefined;
      }
      await provider
        ?.shutdown()
        .catch((err: unknown) => logger.warn({ err }, "trace exporter shutdown failed"));
      logger.flush();
    },
  };
}

/** OTel resource attributes: who emits the spans, in which environment and region, on which host. */
export function resourceAttributes(
  serviceName: string,
  serviceVersion: string | undefined,
  config: TelemetryConfig,
): Record<string, string> {
  const attrs: Record<string, string> = {
    "service.name": serviceName,
    "service.version": serviceVersion ?? "0.0.0",
    // The stable name and the older one most backends still group by.
    "deployment.environment.name": config.environment,
    "deployment.environment": config.environment,
    "host.name": hostname(),
  };
  if (config.region) attrs["cloud.region"] = config.region;
  return attrs;
}
