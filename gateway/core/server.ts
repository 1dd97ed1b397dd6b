import { watch } from "node:fs";
import {
  createServer,
  type IncomingMessage,
  type Server,
  type ServerOptions,
  type ServerResponse,
} from "node:http";
import type { Socket } from "node:net";
import {
  type Context,
  context,
  defaultTextMapGetter,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  trace,
} from "@opentelemetry/api";
import type { Logger } from "pino";
import { ConfigError } from "../../lib/config/index.ts";
import { type Telemetry, traceContextPropagator } from "../../lib/telemetry/index.ts";
import { type AccessLogPolicy, accessLogPolicy, keepAccessLine } from "../telemetry/access.ts";
import { GatewayMetrics, TlsMetrics } from "../telemetry/metrics.ts";
import { redactTarget, screenLogFields } from "../telemetry/redact.ts";
import { BodyMemoryWatch } from "./body-memory.ts";
import { type LoadedConfig, loadGatewayConfig } from "./config.ts";
import { ClientExchange } from "./exchange.ts";
import { addForwardingHeaders, clientAddress, isHopByHop, requestIdFor, withoutHopByHop } from "./headers.ts";
import { GatewayError, problemBody, sendProblem } from "./problem.ts";
import { hostOnly } from "./router.ts";
import { type RouteRuntime, Runtime, SharedRegistry } from "./runtime.ts";
import { httpsRedirectLocation, readTlsMaterial, type TlsConfig, TlsReloader } from "./tls.ts";
import type { Exchange, GatewayResponse, HeaderMap } from "./types.ts";
import { UpstreamBody } from "./upstream/call.ts";
import type { EndpointPool } from "./upstream/service.ts";
import { handleUpgrade } from "./websocket.ts";

const NOOP_SPAN = trace.wrapSpanContext({
  traceId: "00000000000000000000000000000000",
  spanId: "0000000000000000",
  traceFlags: 0,
});
const SERVER_SPAN = { kind: SpanKind.SERVER };

/** Dot segments (also percent-encoded) would let "/public/../admin" match a "/public" route. */
const DOT_SEGMENT = /(?:^|\/)(?:\.|%2e){1,2}(?:\/|$)/i;

export interface GatewayServerOptions {
  config: LoadedConfig;
  telemetry: Telemetry;
  /** Watch the config file and reload on change (SIGHUP always reloads). */
  watchConfig?: boolean;
  /** In a cluster worker the primary serves the admin port. */
  serveAdmin?: boolean;
}

/** The proxy listener, its admin listener, the live runtime and reload/drain. */
export class GatewayServer {
  readonly telemetry: Telemetry;
  readonly metrics: GatewayMetrics;
  readonly logger: Logger;
  runtime!: Runtime;
  private readonly endpoints: EndpointPool = new Map();
  private readonly shared = new SharedRegistry();
  private proxy: Server | undefined;
  private admin: Server | undefined;
  /** server.tls.redirectHttp: the plain-HTTP listener that only redirects to HTTPS. */
  private redirect: Server | undefined;
  private readonly serveAdmin: boolean;
  private draining = false;
  private started = false;
  private watcher: ReturnType<typeof watch> | undefined;
  private tlsReloader: TlsReloader | undefined;
  /** What clients speak to the proxy listener: X-Forwarded-Proto and Forwarded's proto. */
  readonly scheme: "http" | "https";
  private reloading: Promise<boolean> | undefined;
  private readonly sockets = new Set<Socket>();
  private readonly accessLog: AccessLogPolicy;
  /** Access lines skip the logger's redaction pass: their fields are fixed here and screened. */
  private readonly accessLogger: Logger;
  private readonly via: string;
  private initial: LoadedConfig;
  private readonly watchConfig: boolean;
  readonly bodyMemory: BodyMemoryWatch;

  constructor(opts: GatewayServerOptions) {
    this.telemetry = opts.telemetry;
    this.logger = opts.telemetry.logger;
    this.metrics = new GatewayMetrics(opts.telemetry.registry, opts.config.core.telemetry.metrics.enabled);
    this.serveAdmin = opts.serveAdmin ?? true;
    this.accessLog = accessLogPolicy(opts.config.core.telemetry.logs);
    this.accessLogger = opts.telemetry.accessLogger ?? opts.telemetry.logger;
    this.via = `1.1 ${opts.config.core.server.name}`;
    this.scheme = opts.config.core.server.tls ? "https" : "http";
    this.initial = opts.config;
    this.watchConfig = opts.watchConfig ?? false;
    this.bodyMemory = new BodyMemoryWatch(
      opts.config.core.server.scavengeAfter,
      () => this.metrics.inflightCount,
    );
  }

  /** The proxy listener over TLS (`server.tls`), with its certificate reloads and metrics. */
  private tlsServer(
    cfg: TlsConfig,
    http: ServerOptions,
    handler: (req: IncomingMessage, res: ServerResponse) => void,
  ): Server {
    const material = readTlsMaterial(cfg);
    const server = process.getBuiltinModule("node:https").createServer(
      {
        ...http,
        cert: material.cert,
        key: material.key,
        minVersion: cfg.minVersion,
        ALPNProtocols: ["http/1.1"],
      },
      handler,
    );
    const metrics = new TlsMetrics(this.telemetry.registry);
    metrics.notAfter.set(material.notAfter.getTime() / 1000);
    server.on("tlsClientError", () => metrics.handshakeErrors.inc());
    this.tlsReloader = new TlsReloader(server, cfg, metrics, this.logger);
    // An https.Server is an http.Server with a TLS handshake in front: the same events and methods.
    return server as unknown as Server;
  }

  get proxyAddress(): { host: string; port: number } {
    const a = this.proxy?.address();
    return a && typeof a === "object" ? { host: a.address, port: a.port } : { host: "", port: 0 };
  }
  get adminAddress(): { host: string; port: number } {
    const a = this.admin?.address();
    return a && typeof a === "object" ? { host: a.address, port: a.port } : { host: "", port: 0 };
  }
  get ready(): boolean {
    return this.started && !this.draining;
  }

  async start(opts: { reusePort?: boolean } = {}): Promise<void> {
    this.runtime = await Runtime.build(this.initial, this.runtimeDeps());
    this.runtime.startHealthChecks();
    const s = this.initial.core.server;
    const http = {
      maxHeaderSize: s.maxHeaderSize,
      headersTimeout: s.headersTimeout,
      requestTimeout: s.requestTimeout,
      keepAliveTimeout: s.keepAliveTimeout,
      // How often Node checks the header/request deadlines; the default (30 s) lets slowloris linger.
      connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(s.headersTimeout / 2))),
      // Checked in handle() instead, so the 400 carries a problem body.
      requireHostHeader: false,
      joinDuplicateHeaders: false,
      // Node rejects obs-fold, bad bytes, CL+TE and conflicting Content-Length itself in strict mode.
      insecureHTTPParser: false,
    };
    const handler = (req: IncomingMessage, res: ServerResponse) => this.handle(req, res);
    const proxy = s.tls ? this.tlsServer(s.tls, http, handler) : createServer(http, handler);
    proxy.on("connection", (socket: Socket) => {
      this.sockets.add(socket);
      this.metrics.connectionCount++;
      socket.once("close", () => {
        this.sockets.delete(socket);
        this.metrics.connectionCount--;
      });
    });
    proxy.on("clientError", (err, socket) =>
      this.onClientError(err as NodeJS.ErrnoException, socket as Socket),
    );
    proxy.on("upgrade", (req, socket, head) => {
      const route = this.match(req);
      if (!route) {
        (socket as Socket).end(rawProblem(404, "no_route", "no route matches this request"));
        return;
      }
      handleUpgrade(this, route, req, socket as Socket, head);
    });
    this.proxy = proxy;
    await listen(proxy, s.listen.host, s.listen.port, opts.reusePort);
    const redirect = s.tls?.redirectHttp;
    if (redirect) {
      this.redirect = createServer(
        { maxHeaderSize: s.maxHeaderSize, headersTimeout: s.headersTimeout, requireHostHeader: false },
        (req, res) => {
          const location = httpsRedirectLocation(hostOnly(req.headers.host), req.url ?? "", redirect.port);
          if (!location) {
            sendProblem(
              res,
              400,
              "bad_request",
              "an HTTPS redirect needs a valid Host and an origin-form target",
            );
            return;
          }
          res.writeHead(308, { location, "content-length": 0 }).end();
        },
      );
      await listen(this.redirect, redirect.listen.host, redirect.listen.port, opts.reusePort);
    }
    if (this.serveAdmin) {
      this.admin = createServer((req, res) => this.handleAdmin(req, res));
      await listen(this.admin, this.initial.core.admin.listen.host, this.initial.core.admin.listen.port);
    }
    if (this.watchConfig && this.initial.file) this.watchFile(this.initial.file);
    this.started = true;
    this.logger.info(
      {
        proxy: this.proxyAddress,
        admin: this.serveAdmin ? this.adminAddress : undefined,
        routes: this.runtime.routes.length,
      },
      "gateway listening",
    );
  }

  private runtimeDeps() {
    return {
      telemetry: this.telemetry,
      metrics: this.metrics,
      endpoints: this.endpoints,
      shared: this.shared,
    };
  }

  match(req: IncomingMessage): RouteRuntime | undefined {
    const url = req.url ?? "/";
    const q = url.indexOf("?");
    const path = q === -1 ? url : url.slice(0, q);
    return this.runtime.router.match(hostOnly(req.headers.host), path, req.method ?? "GET");
  }

  // ---- the request path -------------------------------------------------------------------------

  handle(req: IncomingMessage, res: ServerResponse): void {
    const started = performance.now();
    const rt = this.runtime;
    rt.inflight++;
    this.metrics.inflightCount++;
    this.bodyMemory.touch();
    const requestId = requestIdFor(req.headers["x-request-id"]);
    let routeName = "none";
    let ex: ClientExchange | undefined;
    let span: Span = NOOP_SPAN;
    const clientIp = clientAddress(req.socket.remoteAddress);
    const socket = req.socket;
    // The getter walks the socket's write queue: read it only for the access log that reports it.
    const writtenBefore = this.accessLog.on ? socket.bytesWritten : 0;

    res.once("close", () => {
      if (!res.writableFinished) ex?.clientGone();
      rt.inflight--;
      this.metrics.inflightCount--;
      const status = res.writableFinished ? res.statusCode : 499;
      const seconds = (performance.now() - started) / 1000;
      this.metrics.observeRequest(routeName, req.method ?? "GET", status, seconds);
      if (span.isRecording()) {
        span.setAttribute("http.response.status_code", status);
        if (status >= 500)
          span.setAttribute("error.type", String(status)).setStatus({ code: SpanStatusCode.ERROR });
        else if (status === 499) span.setAttribute("error.type", "client_closed");
      }
      span.end();
      if (keepAccessLine(this.accessLog, status, seconds * 1000)) {
        this.accessLogger.info(
          {
            type: "access",
            request_id: requestId,
            trace_id: span === NOOP_SPAN ? undefined : span.spanContext().traceId,
            method: req.method,
            path: redactTarget(req.url ?? ""),
            route: routeName,
            upstream: ex?.upstream,
            status,
            duration_ms: Math.round(seconds * 1e6) / 1000,
            // Declared request body size; response bytes as written to the socket (headers included).
            bytes_in: Number(req.headers["content-length"]) || 0,
            bytes_out: socket.bytesWritten - writtenBefore,
            client: clientIp,
            ...(ex && screenLogFields(ex.logFields)),
          },
          "request",
        );
      }
      if (rt !== this.runtime && rt.inflight === 0) void rt.close();
    });

    const url = req.url ?? "/";
    if (url.charCodeAt(0) !== 47 /* / */) {
      sendProblem(res, 400, "bad_request_target", "only origin-form request targets are accepted", {
        requestId,
      });
      return;
    }
    const q = url.indexOf("?");
    const pathname = q === -1 ? url : url.slice(0, q);
    const search = q === -1 ? "" : url.slice(q);
    if (DOT_SEGMENT.test(pathname)) {
      sendProblem(res, 400, "bad_path", "dot segments are not allowed in the path", { requestId });
      return;
    }
    const hostHeader = req.headers.host ?? "";
    if (!hostHeader && req.httpVersionMinor >= 1) {
      sendProblem(res, 400, "missing_host", "HTTP/1.1 requests need a Host header", { requestId });
      return;
    }
    const route = rt.router.match(hostOnly(hostHeader), pathname, req.method ?? "GET");
    if (!route) {
      sendProblem(res, 404, "no_route", "no route matches this request", { requestId });
      return;
    }
    routeName = route.name;

    let traceContext: Context = ROOT_CONTEXT;
    if (this.telemetry.tracingEnabled) {
      // W3C traceparent/tracestate from the client; the parent-based sampler follows its sampled flag.
      const parent =
        req.headers.traceparent === undefined
          ? ROOT_CONTEXT
          : traceContextPropagator.extract(ROOT_CONTEXT, req.headers, defaultTextMapGetter);
      span = this.telemetry.tracer.startSpan(route.config.match.path, SERVER_SPAN, parent);
      // Attributes only for sampled spans: unsampled requests (most of them) build nothing.
      if (span.isRecording()) {
        span.updateName(`${req.method} ${route.config.match.path}`);
        span.setAttributes({
          "http.request.method": req.method,
          "url.path": pathname,
          "url.scheme": "http",
          "http.route": route.config.match.path,
          "server.address": hostOnly(hostHeader),
          "client.address": clientIp,
          "network.protocol.version": req.httpVersion,
          "user_agent.original": req.headers["user-agent"],
          "edgeway.route": route.name,
          "edgeway.request_id": requestId,
        });
      }
      traceContext = trace.setSpan(parent, span);
    }

    const headers = withoutHopByHop(req.headers);
    addForwardingHeaders(headers, {
      clientIp,
      trusted: rt.trustedProxies.size > 0 && rt.trustedProxies.has(clientIp),
      protocol: this.scheme,
      host: hostHeader,
      via: this.via,
      requestId,
    });
    if (!route.config.preserveHost) delete headers.host;

    let path = url;
    if (route.config.stripPrefix || route.config.rewritePrefix) {
      const prefix = route.prefix === "/" ? "" : route.prefix.replace(/\/$/, "");
      let rest = url.slice(prefix.length);
      if (rest === "" || rest.charCodeAt(0) === 63) rest = `/${rest}`;
      const target = route.config.rewritePrefix ? route.config.rewritePrefix.replace(/\/$/, "") : "";
      path = target + rest;
    }

    const hasBody =
      req.headers["transfer-encoding"] !== undefined || (Number(req.headers["content-length"]) || 0) > 0;
    ex = new ClientExchange(
      requestId,
      route.name,
      route.serviceName,
      req,
      pathname,
      search,
      clientIp,
      hostHeader,
      { method: req.method ?? "GET", path, headers, body: hasBody ? req : null },
      span,
      traceContext,
      this.logger,
    );
    ex.informational = (status, info) => relayInformational(res, status, info);
    const exchange = ex;
    const run = () =>
      route.handler(exchange).then(
        (out) => this.respond(res, exchange, out),
        (err: unknown) => this.fail(res, exchange, err),
      );
    // Only sampled requests pay for an active context (features pass ex.traceContext explicitly anyway).
    if (span.isRecording()) void context.with(traceContext, run);
    else void run();
  }

  private respond(res: ServerResponse, ex: Exchange, out: GatewayResponse): void {
    if (res.destroyed) {
      destroyBody(out);
      return;
    }
    const headers = withoutHopByHop(out.headers);
    const hasTrailers = out.trailers !== undefined && out.headers.trailer !== undefined;
    if (hasTrailers) {
      headers.trailer = out.headers.trailer;
      delete headers["content-length"];
    }
    headers.via = headers.via === undefined ? this.via : `${headers.via}, ${this.via}`;
    headers["x-request-id"] = ex.id;
    for (const k in ex.responseHeaders) headers[k] = ex.responseHeaders[k];
    const body = out.body;
    if (typeof body === "string" || Buffer.isBuffer(body)) {
      if (headers["content-length"] === undefined)
        headers["content-length"] = String(Buffer.byteLength(body));
    }
    try {
      res.writeHead(out.status, headers as Record<string, string | string[]>);
    } catch (err) {
      destroyBody(out);
      this.fail(
        res,
        ex,
        new GatewayError(502, "bad_upstream_response", `upstream sent an invalid response header`, {
          cause: err,
        }),
      );
      return;
    }
    if (body === null || ex.request.method === "HEAD") {
      if (body !== null && typeof body === "object" && !Buffer.isBuffer(body)) body.resume();
      res.end();
      return;
    }
    if (typeof body === "string" || Buffer.isBuffer(body)) {
      res.end(body);
      return;
    }
    const failed = (err: Error) => {
      ex.logger.warn(
        { err, request_id: ex.id, trace_id: traceIdOf(ex.span), route: ex.routeName, upstream: ex.upstream },
        "response body failed mid-stream",
      );
      res.destroy(err);
    };
    // The common case, an upstream body no filter took: written to the client directly.
    if (!hasTrailers && body instanceof UpstreamBody && body.sinkTo(res, failed)) return;
    body.once("error", failed);
    if (hasTrailers) {
      body.pipe(res, { end: false });
      body.once("end", () => {
        if (out.trailers && Object.keys(out.trailers).length > 0) res.addTrailers(out.trailers);
        res.end();
      });
    } else {
      body.pipe(res);
    }
  }

  private fail(res: ServerResponse, ex: Exchange, err: unknown): void {
    if (err instanceof GatewayError) {
      if (err.status === 499) {
        res.destroy();
        return;
      }
      this.metrics.problems.labels(ex.routeName, err.code).inc();
      if (err.status >= 500) {
        ex.logger.warn(
          {
            request_id: ex.id,
            trace_id: traceIdOf(ex.span),
            route: ex.routeName,
            upstream: ex.upstream,
            code: err.code,
            err: err.cause ?? err.message,
          },
          err.message,
        );
      }
      if (ex.request.body && !Buffer.isBuffer(ex.request.body) && !ex.request.body.readableEnded) {
        // Unread request body: let Node discard it so the connection can be reused, or close it.
        res.shouldKeepAlive = false;
      }
      sendProblem(res, err.status, err.code, err.message, {
        requestId: ex.id,
        headers: err.headers,
        extra: err.extra,
      });
      return;
    }
    this.metrics.problems.labels(ex.routeName, "internal").inc();
    ex.logger.error(
      { err, request_id: ex.id, trace_id: traceIdOf(ex.span), route: ex.routeName, upstream: ex.upstream },
      "unexpected error on the request path",
    );
    sendProblem(res, 500, "internal", "the gateway failed to handle this request", { requestId: ex.id });
  }

  private onClientError(err: NodeJS.ErrnoException, socket: Socket): void {
    if (err.code === "ECONNRESET" || !socket.writable) {
      socket.destroy();
      return;
    }
    let status = 400;
    let code = "bad_request";
    let detail = "malformed HTTP request";
    if (err.code === "HPE_HEADER_OVERFLOW") {
      status = 431;
      code = "headers_too_large";
      detail = "request header fields are too large";
    } else if (err.code === "ERR_HTTP_REQUEST_TIMEOUT" || err.code === "HPE_HEADERS_TIMEOUT") {
      status = 408;
      code = "request_timeout";
      detail = "the request was not received in time";
    } else if (err.code === "HPE_UNEXPECTED_CONTENT_LENGTH" || err.code === "HPE_INVALID_TRANSFER_ENCODING") {
      code = "ambiguous_framing";
      detail = "conflicting Content-Length/Transfer-Encoding";
    } else if (err.code === "HPE_INVALID_HEADER_TOKEN" || err.code === "HPE_INVALID_CONTENT_LENGTH") {
      code = "bad_header";
      detail = "invalid header bytes";
    }
    this.metrics.problems.labels("none", code).inc();
    this.logger.debug({ code: err.code, reason: err.message }, "client error");
    socket.end(rawProblem(status, code, detail));
  }

  // ---- admin ------------------------------------------------------------------------------------

  async handleAdmin(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? "/").split("?")[0];
    try {
      if (path === "/healthz") return json(res, 200, { status: "ok" });
      if (path === "/readyz") {
        return json(res, this.ready ? 200 : 503, {
          status: this.ready ? "ready" : this.draining ? "draining" : "starting",
        });
      }
      if (path === "/metrics") {
        const body = await this.telemetry.registry.metrics();
        res.writeHead(200, { "content-type": this.telemetry.registry.contentType });
        res.end(body);
        return;
      }
      const route = this.runtime.adminRoutes.find((r) => r.path === path);
      if (!route) return sendProblem(res, 404, "not_found", `no admin endpoint ${path}`);
      if (route.method !== req.method)
        return sendProblem(res, 405, "method_not_allowed", `use ${route.method}`, {
          headers: { allow: route.method },
        });
      const token = this.initial.core.admin.token;
      if (route.method !== "GET" && token && req.headers.authorization !== `Bearer ${token}`) {
        return sendProblem(res, 401, "admin_token_required", "a valid admin bearer token is required", {
          headers: { "www-authenticate": 'Bearer realm="edgeway-admin"' },
        });
      }
      const body = await readBody(req, 16 * 1024 * 1024);
      const out = await this.runAdminRoute(route.method, path, body, req);
      res.writeHead(out.status, {
        "content-type": "application/json",
        ...(out.headers as Record<string, string>),
      });
      res.end(JSON.stringify(out.body));
    } catch (err) {
      if (err instanceof GatewayError) return sendProblem(res, err.status, err.code, err.message);
      this.logger.error({ err }, "admin endpoint failed");
      sendProblem(res, 500, "internal", (err as Error).message);
    }
  }

  /** Runs a feature's admin endpoint in this process (a cluster primary overrides this to fan out). */
  async runAdminRoute(method: string, path: string, body: Buffer, req: IncomingMessage | undefined) {
    const route = this.runtime.adminRoutes.find((r) => r.path === path && r.method === method);
    if (!route) throw new GatewayError(404, "not_found", `no admin endpoint ${path}`);
    const out = await route.handle(req ?? ({ headers: {}, method, url: path } as IncomingMessage), body);
    return { ...out, merge: route.merge ?? "first" };
  }

  // ---- reload and drain -------------------------------------------------------------------------

  /** Loads the config file again; keeps the running config when the new one is invalid. */
  reload(): Promise<boolean> {
    if (this.reloading) return this.reloading;
    const file = this.initial.file;
    this.reloading = (async () => {
      try {
        if (!file) throw new Error("no config file to reload from");
        const next = await loadGatewayConfig(file);
        const old = this.runtime;
        const rt = await Runtime.build(next, this.runtimeDeps());
        this.runtime = rt;
        this.initial = next;
        rt.startHealthChecks();
        // Requests still running on the old table keep its filters and resources; the last one to
        // finish closes it (handle()).
        if (old.inflight === 0) await old.close().catch(() => {});
        this.closeUnusedEndpoints(rt);
        this.metrics.reloads.labels("success").inc();
        this.logger.info({ file, routes: rt.routes.length }, "configuration reloaded");
        return true;
      } catch (err) {
        this.metrics.reloads.labels("failure").inc();
        const reason = err instanceof ConfigError ? err.problems : (err as Error).message;
        this.logger.error({ file, reason }, "configuration reload failed; keeping the running configuration");
        return false;
      } finally {
        this.reloading = undefined;
      }
    })();
    return this.reloading;
  }

  private closeUnusedEndpoints(rt: Runtime): void {
    const used = new Set<string>();
    for (const [name, svc] of rt.services)
      for (const k of svc.endpointKeys(rt.config.core.services[name]!)) used.add(k);
    for (const [key, e] of this.endpoints) {
      if (!used.has(key)) {
        this.endpoints.delete(key);
        void e.close(); // waits for in-flight requests on it
      }
    }
  }

  private watchFile(file: string): void {
    let timer: NodeJS.Timeout | undefined;
    try {
      this.watcher = watch(file, () => {
        clearTimeout(timer);
        timer = setTimeout(() => void this.reload(), 200);
      });
      this.watcher.unref();
    } catch (err) {
      this.logger.warn({ err, file }, "cannot watch the config file; SIGHUP still reloads");
    }
  }

  /**
   * Graceful stop: not ready at once, stop accepting, let in-flight requests finish until the
   * deadline, then cut what is left and close the upstream pools.
   */
  async drain(deadlineMs = this.initial.core.server.drainTimeout): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    this.watcher?.close();
    this.tlsReloader?.close();
    this.redirect?.close();
    this.redirect?.closeAllConnections();
    this.bodyMemory.stop();
    this.logger.info({ deadline_ms: deadlineMs }, "draining");
    const proxy = this.proxy;
    const closed = proxy ? new Promise<void>((r) => proxy.close(() => r())) : Promise.resolve();
    proxy?.closeIdleConnections();
    const idleSweep = setInterval(() => proxy?.closeIdleConnections(), 100);
    const deadline = new Promise<"deadline">((r) => setTimeout(() => r("deadline"), deadlineMs).unref());
    const result = await Promise.race([closed.then(() => "drained" as const), deadline]);
    clearInterval(idleSweep);
    if (result === "deadline") {
      this.logger.warn({ open: this.sockets.size }, "drain deadline passed; closing remaining connections");
      proxy?.closeAllConnections();
    }
    // Upgraded (WebSocket) sockets are not the HTTP server's any more: cut what is left ourselves.
    for (const socket of this.sockets) socket.destroy();
    await this.runtime.close();
    await Promise.allSettled([...this.endpoints.values()].map((e) => e.destroy()));
    await this.shared.closeAll(this.logger);
    const admin = this.admin;
    if (admin) {
      const adminClosed = new Promise<void>((r) => admin.close(() => r()));
      admin.closeAllConnections();
      await adminClosed;
    }
  }
}

/** The trace id for log correlation, when tracing is on. */
function traceIdOf(span: Span): string | undefined {
  return span === NOOP_SPAN ? undefined : span.spanContext().traceId;
}

function listen(server: Server, host: string, port: number, reusePort?: boolean): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host, port, reusePort, exclusive: reusePort ? true : undefined }, () => {
      server.off("error", reject);
      resolve();
    });
  });
}

/**
 * Passes an upstream interim response on to the client, before the final one: 103 Early Hints (so the
 * browser can preload) and 102 Processing. 100 Continue is the gateway's own business (Node answers
 * `Expect` itself), and interim responses never reach HTTP/1.0 clients.
 */
function relayInformational(res: ServerResponse, status: number, headers: HeaderMap): void {
  if (res.headersSent || res.req.httpVersionMinor === 0) return;
  if (status === 103) {
    const hints: Record<string, string | string[]> = {};
    for (const name in headers) {
      const v = headers[name];
      if (v !== undefined && !isHopByHop(name)) hints[name] = v;
    }
    res.writeEarlyHints(hints);
  } else if (status === 102) {
    res.writeProcessing();
  }
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "cache-control": "no-store" });
  res.end(text);
}

export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        reject(new GatewayError(413, "body_too_large", `body exceeds ${limit} bytes`));
        req.destroy();
      } else chunks.push(c);
    });
    req.once("end", () => resolve(Buffer.concat(chunks)));
    req.once("error", reject);
  });
}

/** A problem response written straight to a socket (the parser failed, so there is no ServerResponse). */
export function rawProblem(status: number, code: string, detail: string): string {
  const body = JSON.stringify(problemBody(status, code, detail));
  const reason = problemBody(status, code, detail).title;
  return (
    `HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/problem+json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
    `Cache-Control: no-store\r\nConnection: close\r\n\r\n${body}`
  );
}

function destroyBody(out: GatewayResponse): void {
  const b = out.body;
  if (b && typeof b === "object" && !Buffer.isBuffer(b)) b.destroy();
}

export type { HeaderMap };
