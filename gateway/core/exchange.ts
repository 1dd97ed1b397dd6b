import type { IncomingMessage } from "node:http";
import type { Context, Span } from "@opentelemetry/api";
import type { Logger } from "pino";
import type { Exchange, HeaderMap, UpstreamInfo, UpstreamRequest } from "./types.ts";

/**
 * The core's Exchange. A class, so every request object has one shape (fast property access), and its
 * abort signal is created only when a filter asks for it: the plain proxy path uses `onClientGone`
 * instead, which costs a field write rather than an AbortController and an event listener.
 */
export class ClientExchange implements Exchange {
  readonly id: string;
  readonly routeName: string;
  readonly serviceName: string;
  readonly incoming: IncomingMessage;
  readonly pathname: string;
  readonly search: string;
  readonly clientIp: string;
  readonly protocol: "http" | "https" = "http";
  readonly host: string;
  request: UpstreamRequest;
  region: string | undefined = undefined;
  regionStrict = false;
  regionFallback: readonly string[] | undefined = undefined;
  readonly responseHeaders: HeaderMap = {};
  readonly span: Span;
  readonly traceContext: Context;
  readonly logger: Logger;
  upstream: UpstreamInfo | undefined = undefined;
  readonly state: Record<string, unknown> = {};
  readonly logFields: Record<string, unknown> = {};
  /** Set by the server: relays an upstream 1xx (102 Processing, 103 Early Hints) to the client. */
  informational: ((status: number, headers: HeaderMap) => void) | undefined = undefined;
  private controller: AbortController | undefined = undefined;
  private goneHook: (() => void) | undefined = undefined;
  private gone = false;

  constructor(
    id: string,
    routeName: string,
    serviceName: string,
    incoming: IncomingMessage,
    pathname: string,
    search: string,
    clientIp: string,
    host: string,
    request: UpstreamRequest,
    span: Span,
    traceContext: Context,
    logger: Logger,
  ) {
    this.id = id;
    this.routeName = routeName;
    this.serviceName = serviceName;
    this.incoming = incoming;
    this.pathname = pathname;
    this.search = search;
    this.clientIp = clientIp;
    this.host = host;
    this.request = request;
    this.span = span;
    this.traceContext = traceContext;
    this.logger = logger;
    // An own, enumerable accessor: filters that copy the exchange with `{ ...ex }` get the live signal.
    Object.defineProperty(this, "signal", { get: this.lazySignal, enumerable: true });
  }

  declare readonly signal: AbortSignal;

  private lazySignal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.gone) this.controller.abort();
    }
    return this.controller.signal;
  }

  /** Sets the single hook run when the client goes away (the current upstream attempt's abort). */
  onClientGone(hook: (() => void) | undefined): void {
    this.goneHook = hook;
    if (hook && this.gone) hook();
  }

  /** Called by the server when the response closes before it finished. */
  clientGone(): void {
    if (this.gone) return;
    this.gone = true;
    this.controller?.abort();
    this.goneHook?.();
  }
}
