import { hostname } from "node:os";
import { type Tracer, trace } from "@opentelemetry/api";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { resourceFromAttributes } from "@opentelemetry/resources";
import {
  BatchSpanProcessor,
  NodeTracerProvider,
  ParentBasedSampler,
  TraceIdRatioBasedSampler,
} from "@opentelemetry/sdk-trace-node";
import { type Logger, pino } from "pino";
import { collectDefaultMetrics, Registry } from "prom-client";
import type { TelemetryConfig } from "./schema.ts";

export type { TelemetryConfig } from "./schema.ts";
export { telemetrySchema } from "./schema.ts";

/** Everything a program needs to report about itself: one metrics registry, one tracer, one logger. */
export interface Telemetry {
  readonly registry: Registry;
  readonly tracer: Tracer;
  readonly logger: Logger;
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

/** Keys redacted from every log line: credentials never reach the logs. */
export const REDACT_PATHS = [
  "authorization",
  "cookie",
  "set-cookie",
  "req.headers.authorization",
  "req.headers.cookie",
  "req.headers['proxy-authorization']",
  "res.headers['set-cookie']",
  "headers.authorization",
  "headers.cookie",
  "refresh_token",
  "access_token",
  "id_token",
  "client_secret",
  "password",
  "token",
  "*.refresh_token",
  "*.access_token",
  "*.client_secret",
  "*.password",
  "*.token",
];

export function createLogger(
  name: string,
  level: string,
  destination?: NodeJS.WritableStream,
  base?: Record<string, unknown>,
): Logger {
  return pino(
    {
      name,
      level,
      base: { pid: process.pid, ...base },
      redact: { paths: REDACT_PATHS, censor: "[redacted]" },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    destination ?? pino.destination({ dest: 1, sync: false, minLength: 4096 }),
  );
}

export function createTelemetry(opts: TelemetryOptions): Telemetry {
  const { config } = opts;
  const serviceName = config.serviceName ?? opts.serviceName;
  const registry = new Registry();
  if (config.metrics.enabled && config.metrics.process) collectDefaultMetrics({ register: registry });

  const logger = createLogger(serviceName, config.logs.level, opts.logDestination, {
    region: config.region,
  });

  let provider: NodeTracerProvider | undefined;
  if (config.tracing.endpoint) {
    const exporter = new OTLPTraceExporter({
      url: config.tracing.endpoint,
      headers: config.tracing.headers,
      timeoutMillis: config.tracing.exportTimeout,
    });
    provider = new NodeTracerProvider({
      resource: resourceFromAttributes({
        "service.name": serviceName,
        "service.version": opts.serviceVersion ?? "0.0.0",
        "deployment.environment.name": config.environment,
        "deployment.environment": config.environment,
        "cloud.region": config.region ?? "",
        "host.name": hostname(),
      }),
      sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(config.tracing.sampleRatio) }),
      spanProcessors: [
        // A bounded queue that drops when the collector is slow: export never blocks requests.
        new BatchSpanProcessor(exporter, {
          maxQueueSize: 4096,
          maxExportBatchSize: 512,
          scheduledDelayMillis: 1000,
          exportTimeoutMillis: config.tracing.exportTimeout,
        }),
      ],
    });
  }
  // Registers the W3C propagator and the AsyncLocalStorage context manager, so child spans find parents.
  provider?.register();
  const tracer = provider ? provider.getTracer(serviceName, opts.serviceVersion) : trace.getTracer("noop");

  return {
    registry,
    tracer,
    logger,
    tracingEnabled: provider !== undefined,
    async shutdown() {
      await provider
        ?.shutdown()
        .catch((err: unknown) => logger.warn({ err }, "trace exporter shutdown failed"));
      logger.flush();
    },
  };
}
