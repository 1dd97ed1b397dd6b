import { Counter, Gauge, Histogram, type Registry } from "prom-client";

/** Request latency buckets (seconds): fine below 100 ms where a proxy lives, coarse up to a minute. */
export const LATENCY_BUCKETS = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
];

const STATUS_CLASS = ["0xx", "1xx", "2xx", "3xx", "4xx", "5xx"];
export function statusClass(status: number): string {
  return STATUS_CLASS[(status / 100) | 0] ?? "5xx";
}

/** Methods outside this set are reported as "other", so a client cannot mint label values. */
const KNOWN_METHODS = new Set([
  "GET",
  "HEAD",
  "POST",
  "PUT",
  "PATCH",
  "DELETE",
  "OPTIONS",
  "CONNECT",
  "TRACE",
]);
export function methodLabel(method: string): string {
  return KNOWN_METHODS.has(method) ? method : "other";
}

/** Anything with a `.inc(n)`/`.observe(v)`: prom-client children, cached per label set. */
interface Child {
  inc(n?: number): void;
}
interface ObserveChild {
  observe(v: number): void;
}

/**
 * The gateway core's metrics. Labels are only config-defined names (route, service, endpoint, region)
 * and bounded classes. Children are cached by label key so the hot path does one Map lookup.
 */
export class GatewayMetrics {
  readonly requests: Counter<"route" | "method" | "status_class">;
  readonly requestDuration: Histogram<"route" | "method" | "status_class">;
  readonly upstreamDuration: Histogram<"service" | "endpoint" | "region">;
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
  private readonly counterChildren = new Map<string, Child>();
  private readonly histChildren = new Map<string, ObserveChild>();

  constructor(registry: Registry) {
    const registers = [registry];
    this.requests = new Counter({
      name: "edgeway_http_requests_total",
      help: "Requests answered, by route, method and status class.",
      labelNames: ["route", "method", "status_class"],
      registers,
    });
    this.requestDuration = new Histogram({
      name: "edgeway_http_request_duration_seconds",
      help: "Time from request received to response finished.",
      labelNames: ["route", "method", "status_class"],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.upstreamDuration = new Histogram({
      name: "edgeway_upstream_request_duration_seconds",
      help: "Upstream attempt time until response headers, per endpoint.",
      labelNames: ["service", "endpoint", "region"],
      buckets: LATENCY_BUCKETS,
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
    });
    this.inflight = new Gauge({
      name: "edgeway_inflight_requests",
      help: "Requests being handled.",
      registers,
    });
    this.endpointHealthy = new Gauge({
      name: "edgeway_endpoint_healthy",
      help: "1 when the endpoint may take traffic (healthy and not ejected), else 0.",
      labelNames: ["service", "endpoint", "region"],
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
      registers,
    });
    this.problems = new Counter({
      name: "edgeway_problem_responses_total",
      help: "Problem responses the gateway produced itself, by route and problem code.",
      labelNames: ["route", "code"],
      registers,
    });
  }

  /** Counts a finished request; `seconds` is the total handling time. */
  observeRequest(route: string, method: string, status: number, seconds: number): void {
    const m = methodLabel(method);
    const sc = statusClass(status);
    const key = `${route}\u0000${m}\u0000${sc}`;
    let c = this.counterChildren.get(key);
    let h = this.histChildren.get(key);
    if (!c || !h) {
      c = this.requests.labels(route, m, sc);
      h = this.requestDuration.labels(route, m, sc);
      this.counterChildren.set(key, c);
      this.histChildren.set(key, h);
    }
    c.inc();
    h.observe(seconds);
  }
}
