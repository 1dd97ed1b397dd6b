import { type Readable, Transform } from "node:stream";
import { type Context, ROOT_CONTEXT, type Span, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { errors as undiciErrors } from "undici";
import { traceContextPropagator } from "../../../lib/telemetry/index.ts";
import type { GatewayMetrics } from "../../telemetry/metrics.ts";
import { redactTarget } from "../../telemetry/redact.ts";
import { ClientExchange } from "../exchange.ts";
import { GatewayError } from "../problem.ts";
import type { TimeoutsConfig } from "../schema.ts";
import type { Exchange, GatewayResponse, Handler } from "../types.ts";
import { UpstreamCall } from "./call.ts";
import type { Endpoint } from "./endpoint.ts";
import type { UpstreamService } from "./service.ts";

const IDEMPOTENT = new Set(["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"]);

export type FailureKind =
  | "connect"
  | "reset"
  | "connect_timeout"
  | "response_header_timeout"
  | "aborted"
  | "tls"
  | "other";

/** Certificate verification failures Node reports for a TLS connection (see node:tls). */
const CERT_ERRORS = new Set([
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "CERT_HAS_EXPIRED",
  "CERT_NOT_YET_VALID",
  "CERT_REVOKED",
  "CERT_UNTRUSTED",
  "CERT_SIGNATURE_FAILURE",
  "HOSTNAME_MISMATCH",
]);

/** Classifies an undici failure that happened before any response byte. */
export function classifyUpstreamError(err: unknown): FailureKind {
  const code = (err as { code?: string })?.code;
  if (err instanceof undiciErrors.ConnectTimeoutError || code === "UND_ERR_CONNECT_TIMEOUT")
    return "connect_timeout";
  if (err instanceof undiciErrors.HeadersTimeoutError || code === "UND_ERR_HEADERS_TIMEOUT")
    return "response_header_timeout";
  if (
    err instanceof undiciErrors.RequestAbortedError ||
    code === "UND_ERR_ABORTED" ||
    (err as Error)?.name === "AbortError"
  )
    return "aborted";
  if (
    code === "ECONNREFUSED" ||
    code === "ENOTFOUND" ||
    code === "EHOSTUNREACH" ||
    code === "ENETUNREACH" ||
    code === "EAI_AGAIN"
  )
    return "connect";
  // Before "reset": a refused client certificate also ends the connection, and retrying cannot help.
  if (code && (CERT_ERRORS.has(code) || code.startsWith("ERR_TLS_") || code.startsWith("ERR_SSL_")))
    return "tls";
  if (code === "ECONNRESET" || code === "EPIPE" || code === "UND_ERR_SOCKET" || code === "UND_ERR_CLOSED")
    return "reset";
  return "other";
}

/** May this failed attempt be sent again? Only idempotent, replayable requests that got no response byte. */
export function isRetryable(kind: FailureKind, method: string, bodyReplayable: boolean): boolean {
  if (!IDEMPOTENT.has(method) || !bodyReplayable) return false;
  return kind === "connect" || kind === "reset" || kind === "connect_timeout";
}

export interface RouteUpstream {
  routeName: string;
  service: UpstreamService;
  timeouts: TimeoutsConfig;
  maxAttempts: number;
  maxBodySize: number;
  defaultRegion: string;
  regionFallback: readonly string[];
  metrics: GatewayMetrics;
}

/** Counts request body bytes and fails the stream once it passes the route's limit. */
function limitBody(source: Readable, max: number): Readable {
  let seen = 0;
  const limiter = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      seen += chunk.length;
      if (seen > max) cb(new GatewayError(413, "body_too_large", `request body exceeds ${max} bytes`));
      else cb(null, chunk);
    },
  });
  source.on("error", (err) => limiter.destroy(err));
  return source.pipe(limiter);
}

const tracer = () => trace.getTracer("edgeway-gateway");

const headerSetter = {
  set(carrier: Record<string, string | string[] | undefined>, key: string, value: string) {
    carrier[key] = value;
  },
};

/** Writes W3C traceparent/tracestate for `ctx` (replacing the client's) into the upstream headers. */
function injectTrace(ctx: Context, headers: Record<string, string | string[] | undefined>): void {
  // A client tracestate belongs to the client's traceparent: the propagator writes the context's own.
  if (headers.tracestate !== undefined) delete headers.tracestate;
  traceContextPropagator.inject(ctx, headers, headerSetter);
}

/** A client span per upstream attempt, with the HTTP client semantic-convention attributes. */
function startClientSpan(ex: Exchange, endpoint: Endpoint, attempt: number): Span {
  const u = new URL(endpoint.origin);
  return tracer().startSpan(
    ex.request.method,
    {
      kind: SpanKind.CLIENT,
      attributes: {
        "http.request.method": ex.request.method,
        "server.address": u.hostname,
        "server.port": Number(u.port) || (u.protocol === "https:" ? 443 : 80),
        "url.full": endpoint.origin + redactTarget(ex.request.path),
        "http.request.resend_count": attempt > 1 ? attempt - 1 : undefined,
        "edgeway.service": endpoint.service,
        "edgeway.region": endpoint.region,
      },
    },
    ex.traceContext,
  );
}

/**
 * The innermost handler: sends `ex.request` to one endpoint of the route's service through its undici pool,
 * retrying idempotent requests on connect errors and resets (budgeted), and returns the streaming response.
 */
export function createDispatcher(r: RouteUpstream): Handler {
  const { service, timeouts, metrics } = r;
  return async function dispatch(ex: Exchange): Promise<GatewayResponse> {
    const req = ex.request;
    let body: Readable | Buffer | null = req.body;
    if (body && !Buffer.isBuffer(body)) {
      const declared = Number(ex.incoming.headers["content-length"]);
      if (Number.isFinite(declared) && declared > r.maxBodySize) {
        throw new GatewayError(
          413,
          "body_too_large",
          `request body of ${declared} bytes exceeds ${r.maxBodySize}`,
        );
      }
      if (!Number.isFinite(declared)) body = limitBody(body, r.maxBodySize);
    } else if (body && body.length > r.maxBodySize) {
      throw new GatewayError(413, "body_too_large", `request body exceeds ${r.maxBodySize} bytes`);
    }
    const replayable = body === null || Buffer.isBuffer(body);
    // The server already removed hop-by-hop fields when it built these headers: adjust them in place
    // rather than copying them again on every request.
    const headers = req.headers;
    // The gateway answers `Expect: 100-continue` itself (Node does), and undici refuses the field.
    delete headers.expect;
    // undici frames buffered bodies itself; a streamed client body keeps its declared length.
    if (body === null || Buffer.isBuffer(body)) delete headers["content-length"];
    // Trailers reach the client only if the upstream knows the client accepts them.
    const te = ex.incoming.headers.te;
    if (te && String(te).toLowerCase().includes("trailers")) headers.te = "trailers";

    service.retryBudget.deposit();
    const preferred = ex.region ?? r.defaultRegion;
    let tried: Set<Endpoint> | undefined;
    for (let attempt = 1; ; attempt++) {
      const endpoint = service.pick(preferred, ex.regionStrict, ex.regionFallback ?? r.regionFallback, tried);
      if (!endpoint) {
        throw new GatewayError(
          503,
          "no_healthy_upstream",
          `no healthy endpoint for service "${service.name}"`,
          {
            headers: { "retry-after": "5" },
          },
        );
      }
      const span = ex.span.isRecording() ? startClientSpan(ex, endpoint, attempt) : undefined;
      // The upstream continues this trace; unsampled requests pass on the gateway's "not sampled"
      // decision. With tracing off the client's traceparent is forwarded as received.
      if (span) injectTrace(trace.setSpan(ex.traceContext, span), headers);
      else if (ex.traceContext !== ROOT_CONTEXT) injectTrace(ex.traceContext, headers);
      const em = metrics.endpoint(endpoint);

      ex.upstream = {
        service: service.name,
        endpoint: endpoint.url,
        region: endpoint.region,
        attempts: attempt,
      };
      endpoint.outstanding++;
      const started = performance.now();
      const call = new UpstreamCall();
      if (ex instanceof ClientExchange) call.onInformational = ex.informational;
      const detach = watchClient(ex, call);
      try {
        endpoint.pool(timeouts.connect).dispatch(
          {
            path: req.path,
            method: req.method as "GET",
            headers: headers as Record<string, string>,
            body,
            headersTimeout: timeouts.responseHeader,
            bodyTimeout: timeouts.idleBody,
            idempotent: IDEMPOTENT.has(req.method),
            blocking: false,
          },
          call,
        );
        const res = await call.result;
        const upstreamMs = performance.now() - started;
        em.duration.observe(upstreamMs / 1000);
        ex.logFields.upstream_ms = Math.round(upstreamMs * 1000) / 1000;
        const status = res.status;
        em.response(status);
        if (status === 502 || status === 503 || status === 504) service.reportFailure(endpoint);
        else service.reportSuccess(endpoint);
        const resBody = res.body;
        // Once the body is over (ended, failed or destroyed): the endpoint has one request fewer.
        resBody.onDone = (err?: Error) => {
          endpoint.outstanding--;
          if (err) {
            const idle = err instanceof undiciErrors.BodyTimeoutError;
            if (idle)
              metrics.upstreamTimeouts.labels(service.name, endpoint.url, endpoint.region, "idle_body").inc();
            span
              ?.setAttribute("error.type", idle ? "idle_body_timeout" : "body_error")
              .setStatus({ code: SpanStatusCode.ERROR, message: err.message });
          }
          span?.end(); // the client span covers the body transfer too
        };
        if (span) {
          span.setAttribute("http.response.status_code", status);
          if (status >= 500)
            span.setAttribute("error.type", String(status)).setStatus({ code: SpanStatusCode.ERROR });
        }
        // The client may leave while the body streams: destroying the body aborts the upstream request.
        detach?.();
        if (ex instanceof ClientExchange) ex.onClientGone(() => resBody.destroy());
        const out: GatewayResponse = {
          status,
          headers: res.headers,
          body: req.method === "HEAD" || status === 204 || status === 304 ? drained(resBody) : resBody,
        };
        if (headers.te === "trailers") out.trailers = resBody.trailers;
        return out;
      } catch (err) {
        detach?.();
        endpoint.outstanding--;
        if (err instanceof GatewayError) {
          span?.end();
          throw err;
        }
        const kind = classifyUpstreamError(err);
        if (span) {
          span.recordException(err as Error);
          span.setAttribute("error.type", kind);
          span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error).message });
          span.end();
        }
        if (kind === "aborted")
          throw new GatewayError(499, "client_closed", "client closed the request", { cause: err });
        const labels = [service.name, endpoint.url, endpoint.region] as const;
        if (kind === "connect" || kind === "reset" || kind === "tls")
          metrics.upstreamConnectErrors.labels(...labels).inc();
        else if (kind === "connect_timeout") metrics.upstreamTimeouts.labels(...labels, "connect").inc();
        else if (kind === "response_header_timeout")
          metrics.upstreamTimeouts.labels(...labels, "response_header").inc();
        if (kind !== "other") service.reportFailure(endpoint);

        if (attempt < r.maxAttempts && isRetryable(kind, req.method, replayable)) {
          if (service.retryBudget.tryWithdraw()) {
            metrics.upstreamRetries.labels(service.name).inc();
            tried ??= new Set();
            tried.add(endpoint);
            // A single-endpoint service retries the same endpoint (a stale keep-alive reset is the usual cause).
            if (tried.size >= service.all.length) tried.clear();
            continue;
          }
          metrics.retryBudgetExhausted.labels(service.name).inc();
        }
        throw upstreamProblem(kind, service.name, err);
      }
    }
  };
}

/** HEAD, 204 and 304 carry no body: drain what undici holds and hand the client nothing. */
function drained(body: Readable): null {
  body.resume();
  return null;
}

/**
 * Aborts the attempt when the client goes away: through the core exchange's hook (no listener, no
 * AbortController), or through `ex.signal` for exchanges a filter copied.
 */
function watchClient(ex: Exchange, call: UpstreamCall): (() => void) | undefined {
  if (ex instanceof ClientExchange) {
    ex.onClientGone(() => call.abort());
    return () => ex.onClientGone(undefined);
  }
  const signal = ex.signal;
  if (signal.aborted) {
    call.abort();
    return undefined;
  }
  const onAbort = () => call.abort();
  signal.addEventListener("abort", onAbort, { once: true });
  return () => signal.removeEventListener("abort", onAbort);
}

function upstreamProblem(kind: FailureKind, service: string, cause: unknown): GatewayError {
  switch (kind) {
    case "connect_timeout":
      return new GatewayError(
        504,
        "upstream_connect_timeout",
        `timed out connecting to service "${service}"`,
        { cause },
      );
    case "response_header_timeout":
      return new GatewayError(504, "upstream_timeout", `service "${service}" did not answer in time`, {
        cause,
      });
    case "connect":
      return new GatewayError(502, "upstream_unreachable", `service "${service}" refused the connection`, {
        cause,
      });
    case "tls":
      return new GatewayError(
        502,
        "upstream_tls",
        // The code, not OpenSSL's message (library paths); the warn log line keeps the whole cause.
        `TLS with service "${service}" failed (${(cause as { code?: string })?.code ?? "handshake"})`,
        { cause },
      );
    case "reset":
      return new GatewayError(
        502,
        "upstream_reset",
        `service "${service}" closed the connection before answering`,
        { cause },
      );
    default:
      return new GatewayError(
        502,
        "upstream_error",
        `service "${service}" failed: ${(cause as Error)?.message ?? cause}`,
        {
          cause,
        },
      );
  }
}
