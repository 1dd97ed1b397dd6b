import { Counter, Gauge, type Registry } from "prom-client";
import {
  type CounterCell,
  HistogramCell,
  HotCounter,
  HotHistogram,
} from "../../lib/telemetry/hot-metrics.ts";

/** Request latency buckets (seconds): fine below 100 ms where a proxy lives, coarse up to a minute. */
export const LATENCY_BUCKETS = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
];

const STATUS_CLASS = ["0xx", "1xx", "2xx", "3xx", "4xx", "5xx"];
export function statusClass(status: number): string {
  return STATUS_CLASS[(status / 100) | 0] ?? "5xx";
}

/** Methods outside this list are reported as "other", so a client cannot mint label values. */
const METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"];
const METHOD_INDEX = new Map(METHODS.map((m, i) => [m, i]));
const OTHER_METHOD = METHODS.length;
export function methodLabel(method: string): string {
  return METHOD_INDEX.has(method) ? method : "other";
}

/** Where an upstream attempt went: the config-defined names an endpoint is labelled with. */
export interface EndpointLabels {
  readonly service: string;
  readonly url: string;
  readonly region: string;
}

/** One endpoint's metric children, resolved once and reused for every request to it. */
export interface EndpointMetrics {
  readonly duration: HistogramCell;
  /** Counts an upstream response by status class. */
  response(status: number): void;
}

const NO_ENDPOINT_METRICS: EndpointMetrics = {
  duration: new HistogramCell({}, []),
  response() {},
};

/**
 * The gateway core's metrics. Labels are only config-defined names (route, service, endpoint, region)
 * and bounded classes, never a path, query or user. Per-request updates go through metric children
 * cached by route/method/status or by endpoint object, so the hot path allocates nothing; connection
 * and in-flight gauges are plain numbers read at scrape time.
 */
export class GatewayMetrics {
  readonly requests: HotCounter<"route" | "method" | "status_class">;
  readonly requestDuration: HotHistogram<"route" | "method" | "status_class">;
  readonly upstreamDuration: HotHistogram<"service" | "endpoint" | "region">;
  readonly upstreamResponses: HotCounter<"service" | "endpoint" | "region" | "status_class">;
  readonly upstreamConnectErrors: Counter<"service" | "endpoint" | "region">;
  readonly upstreamTimeouts: Counter<"service" | "endpoint" | "region" | "kind">;
  readonly upstreamRetries: Counter<"service">;
  readonly retryBudgetExhausted: Counter<"service">;
  readonly activeConnections: Gauge;
  readonly inflight: Gauge;
  readonly endpointHealthy: Gauge<"service" | "endpoint" | "region">;
  readonly ejections: Counter<"service" | "endpoint" | "region">;
  readonly reloads: Counter<"result">;
  readonly problems: Counter<"route" | "code">;
  /** Open client connections and requests being handled; the gauges read these when scraped. */
  connectionCount = 0;
  inflightCount = 0;
  /** route → children indexed by method × status class. */
  private readonly requestChildren = new Map<string, ({ c: CounterCell; h: HistogramCell } | undefined)[]>();
  private readonly endpointChildren = new WeakMap<EndpointLabels, EndpointMetrics>();

  /** False when `telemetry.metrics.enabled` is off: per-request histograms and counters are skipped. */
  readonly enabled: boolean;

  constructor(registry: Registry, enabled = true) {
    this.enabled = enabled;
    const registers = [registry];
    const self = this;
    this.requests = new HotCounter({
      name: "edgeway_http_requests_total",
      help: "Requests answered, by route, method and status class (route none: no route matched).",
      labelNames: ["route", "method", "status_class"],
      registers,
    });
    this.requestDuration = new HotHistogram({
      name: "edgeway_http_request_duration_seconds",
      help: "Time from request received to response finished.",
      labelNames: ["route", "method", "status_class"],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.upstreamDuration = new HotHistogram({
      name: "edgeway_upstream_request_duration_seconds",
      help: "Upstream attempt time until response headers, per endpoint.",
      labelNames: ["service", "endpoint", "region"],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.upstreamResponses = new HotCounter({
      name: "edgeway_upstream_responses_total",
      help: "Upstream responses by endpoint and status class.",
      labelNames: ["service", "endpoint", "region", "status_class"],
      registers,
    });
    this.upstreamConnectErrors = new Counter({
      name: "edgeway_upstream_connect_errors_total",
      help: "Upstream connections refused, reset or failed before a response.",
      labelNames: ["service", "endpoint", "region"],
      registers,
    });
    this.upstreamTimeouts = new Counter({
      name: "edgeway_upstream_timeouts_total",
      help: "Upstream timeouts by kind (connect, response_header, idle_body).",
      labelNames: ["service", "endpoint", "region", "kind"],
      registers,
    });
    this.upstreamRetries = new Counter({
      name: "edgeway_upstream_retries_total",
      help: "Retried upstream attempts.",
      labelNames: ["service"],
      registers,
    });
    this.retryBudgetExhausted = new Counter({
      name: "edgeway_upstream_retry_budget_exhausted_total",
      help: "Retries refused because the service's retry budget was spent.",
      labelNames: ["service"],
      registers,
    });
    this.activeConnections = new Gauge({
      name: "edgeway_active_connections",
      help: "Open client connections.",
      registers,
      collect() {
        this.set(self.connectionCount);
      },
    });
    this.inflight = new Gauge({
      name: "edgeway_inflight_requests",
      help: "Requests being handled.",
      registers,
      collect() {
        this.set(self.inflightCount);
      },
    });
    this.endpointHealthy = new Gauge({
      name: "edgeway_endpoint_healthy",
      help: "1 when the endpoint may take traffic (healthy and not ejected), else 0.",
      labelNames: ["service", "endpoint", "region"],
      // Across workers: 0 as soon as one worker stops sending to it.
      aggregator: "min",
      registers,
    });
    this.ejections = new Counter({
      name: "edgeway_endpoint_ejections_total",
      help: "Passive outlier ejections.",
      labelNames: ["service", "endpoint", "region"],
      registers,
    });
    this.reloads = new Counter({
      name: "edgeway_config_reloads_total",
      help: "Config reloads by result (success, failure).",
      labelNames: ["result"],
      // Every worker applies each reload: across workers, the count of reload events, not × workers.
      aggregator: "max",
      registers,
    });
    this.problems = new Counter({
      name: "edgeway_problem_responses_total",
      help: "Problem responses the gateway produced itself, by route and problem code.",
      labelNames: ["route", "code"],
      registers,
    });
  }

  /** Counts a finished request; `seconds` is the total handling time. `route` is a config name or "none". */
  observeRequest(route: string, method: string, status: number, seconds: number): void {
    if (!this.enabled) return;
    let byKey = this.requestChildren.get(route);
    if (!byKey) {
      byKey = [];
      this.requestChildren.set(route, byKey);
    }
    const mi = METHOD_INDEX.get(method) ?? OTHER_METHOD;
    let si = (status / 100) | 0;
    if (si < 0 || si > 5) si = 5;
    const k = mi * 6 + si;
    let child = byKey[k];
    if (!child) {
      const m = mi === OTHER_METHOD ? "other" : METHODS[mi]!;
      const sc = STATUS_CLASS[si]!;
      child = { c: this.requests.cell(route, m, sc), h: this.requestDuration.cell(route, m, sc) };
      byKey[k] = child;
    }
    child.c.inc();
    child.h.observe(seconds);
  }

  /** The metric children of one endpoint, created on first use. */
  endpoint(e: EndpointLabels): EndpointMetrics {
    if (!this.enabled) return NO_ENDPOINT_METRICS;
    let em = this.endpointChildren.get(e);
    if (!em) {
      const duration = this.upstreamDuration.cell(e.service, e.url, e.region);
      // Cells are created on first use so an endpoint shows only the classes it answered with.
      const responses: (CounterCell | undefined)[] = [];
      const upstreamResponses = this.upstreamResponses;
      em = {
        duration,
        response(status: number) {
          let si = (status / 100) | 0;
          if (si < 0 || si > 5) si = 5;
          let c = responses[si];
          if (!c) {
            c = upstreamResponses.cell(e.service, e.url, e.region, STATUS_CLASS[si]!);
            responses[si] = c;
          }
          c.inc();
        },
      };
      this.endpointChildren.set(e, em);
    }
    return em;
  }
}

/**
 * The cluster primary's own metrics (`server.workers` above 1), next to its process metrics: how many
 * workers are configured and ready, and how often one had to be replaced.
 */
export class ClusterMetrics {
  readonly restarts: Counter;

  constructor(registry: Registry, workers: number, ready: () => number) {
    const registers = [registry];
    new Gauge({
      name: "edgeway_cluster_workers",
      help: "Worker processes configured (server.workers).",
      registers,
      collect() {
        this.set(workers);
      },
    });
    new Gauge({
      name: "edgeway_cluster_workers_ready",
      help: "Worker processes started and serving.",
      registers,
      collect() {
        this.set(ready());
      },
    });
    this.restarts = new Counter({
      name: "edgeway_cluster_worker_restarts_total",
      help: "Workers that exited unexpectedly and were replaced.",
      registers,
    });
  }
}

/** The listener's certificate metrics: when it expires (alert on it), and how its reloads went. */
export class TlsMetrics {
  readonly notAfter: Gauge;
  readonly reloads: Counter<"result">;
  readonly handshakeErrors: Counter;

  constructor(registry: Registry) {
    const registers = [registry];
    this.notAfter = new Gauge({
      name: "edgeway_tls_certificate_expiry_timestamp_seconds",
      help: "When the certificate the proxy listener serves expires (notAfter), in Unix seconds.",
      registers,
    });
    this.reloads = new Counter({
      name: "edgeway_tls_certificate_reloads_total",
      help: "Certificate file changes applied (success) or refused and the old certificate kept (failure).",
      labelNames: ["result"],
      registers,
    });
    this.handshakeErrors = new Counter({
      name: "edgeway_tls_handshake_errors_total",
      help: "Client connections that failed the TLS handshake (plain HTTP, old protocol, bad client).",
      registers,
    });
  }
}
