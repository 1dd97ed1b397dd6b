import { Readable } from "node:stream";
import type { Dispatcher } from "undici";
import { errors as undiciErrors } from "undici";
import type { HeaderMap } from "../types.ts";

type Controller = Dispatcher.DispatchController;

/**
 * An upstream response body fed by undici's raw dispatch handler: chunks are pushed as they arrive and
 * the connection is paused when the consumer falls behind (backpressure), resumed when it reads again.
 * Destroying it before the end aborts the upstream request.
 */
export class UpstreamBody extends Readable {
  controller: Controller | undefined;
  finished = false;
  /** Filled in place when the body ends (callers may hold the reference before that). */
  readonly trailers: Record<string, string> = {};

  override _read(): void {
    this.controller?.resume();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    if (!this.finished && this.controller && !this.controller.aborted) {
      this.controller.abort(err ?? new undiciErrors.RequestAbortedError());
    }
    cb(err);
  }
}

export interface CallResult {
  status: number;
  headers: HeaderMap;
  body: UpstreamBody;
}

/**
 * One upstream attempt over undici's dispatch API. Compared with `pool.request()` it skips the
 * AsyncResource, the abort-signal plumbing and a promise layer per request: this is the proxy hot path.
 * Resolves at response headers; fails before them with undici's error (so the caller can retry).
 */
export class UpstreamCall implements Dispatcher.DispatchHandler {
  private resolve!: (r: CallResult) => void;
  private reject!: (err: Error) => void;
  readonly result: Promise<CallResult>;
  private controller: Controller | undefined;
  private body: UpstreamBody | undefined;
  private abortReason: Error | undefined;
  /** Relays interim (1xx) responses, e.g. 103 Early Hints, to the client while the final one is pending. */
  onInformational: ((status: number, headers: HeaderMap) => void) | undefined = undefined;

  constructor() {
    this.result = new Promise<CallResult>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
  }

  /** Cancels the attempt (the client went away); safe at any point. */
  abort(reason: Error = new undiciErrors.RequestAbortedError()): void {
    if (this.abortReason) return;
    this.abortReason = reason;
    if (this.controller && !this.controller.aborted) this.controller.abort(reason);
  }

  onRequestStart(controller: Controller): void {
    this.controller = controller;
    if (this.abortReason) controller.abort(this.abortReason);
  }

  onResponseStart(
    controller: Controller,
    statusCode: number,
    headers: Record<string, string | string[] | undefined>,
  ): void {
    if (statusCode < 200) {
      // 1xx informational: relayed when the client can take it; the final response follows.
      this.onInformational?.(statusCode, headers);
      return;
    }
    const body = new UpstreamBody({ highWaterMark: 64 * 1024 });
    body.controller = controller;
    this.body = body;
    this.resolve({ status: statusCode, headers, body });
  }

  onResponseData(controller: Controller, chunk: Buffer): void {
    if (this.body && !this.body.push(chunk)) controller.pause();
  }

  onResponseEnd(_controller: Controller, trailers: Record<string, string | string[] | undefined>): void {
    const body = this.body;
    if (!body) return;
    body.finished = true;
    for (const k in trailers) {
      const v = trailers[k];
      body.trailers[k] = Array.isArray(v) ? v.join(", ") : (v ?? "");
    }
    body.push(null);
  }

  onResponseError(_controller: Controller, err: Error): void {
    if (this.body) {
      this.body.finished = true;
      this.body.destroy(err);
    } else this.reject(this.abortReason ?? err);
  }
}
