import type { ServerResponse } from "node:http";
import { Readable } from "node:stream";
import type { Dispatcher } from "undici";
import { errors as undiciErrors } from "undici";
import type { HeaderMap } from "../types.ts";

type Controller = Dispatcher.DispatchController;

const HIGH_WATER_MARK = 64 * 1024;
/** No consumer yet: chunks wait in a plain array (most small bodies have arrived by then). */
const PENDING = 0;
/** Read as a Readable (a filter wraps it, or `pipe`): the stream machinery with its backpressure. */
const STREAM = 1;
/** Written straight to the client's response by the server: no Readable flow, no pipe. */
const SINK = 2;

function ignoreError(): void {}

/**
 * An upstream response body fed by undici's raw dispatch handler.
 *
 * It is a Readable, so filters can wrap, buffer or pipe it. But most responses go to the client
 * unchanged, and for those the Readable flow and `pipe()` were a large share of the proxy's per-request
 * CPU. So chunks wait in a plain array until a consumer shows up: a Readable consumer (the first
 * `_read`) gets them pushed and the stream machinery from then on; the server's `sinkTo(res)` writes
 * them to the response directly, with the same backpressure (pause the upstream when the client socket
 * is full, resume on `drain`). Destroying it before the end aborts the upstream request.
 */
export class UpstreamBody extends Readable {
  controller: Controller | undefined;
  finished = false;
  /** Filled in place when the body ends (callers may hold the reference before that). */
  readonly trailers: Record<string, string> = {};
  /** Runs once when the body is over: ended, failed (with the error) or destroyed. */
  onDone: ((err?: Error) => void) | undefined = undefined;
  private mode = PENDING;
  private pending: Buffer[] | undefined = undefined;
  private pendingBytes = 0;
  private failure: Error | undefined = undefined;
  private sink: ServerResponse | undefined = undefined;
  private sinkError: ((err: Error) => void) | undefined = undefined;
  private resumeOnDrain: (() => void) | undefined = undefined;

  constructor() {
    super({ highWaterMark: HIGH_WATER_MARK });
  }

  /** A chunk from undici. */
  deliver(chunk: Buffer): void {
    const controller = this.controller!;
    if (this.mode === SINK) {
      if (!this.sink!.write(chunk)) this.pauseUntilDrain(controller);
    } else if (this.mode === STREAM) {
      if (!this.push(chunk)) controller.pause();
    } else {
      if (this.pending === undefined) this.pending = [chunk];
      else this.pending.push(chunk);
      this.pendingBytes += chunk.length;
      if (this.pendingBytes >= HIGH_WATER_MARK) controller.pause();
    }
  }

  /** The upstream finished the body. */
  finish(): void {
    this.finished = true;
    // While pending, the consumer finds `finished` set when it comes.
    if (this.mode === SINK) {
      this.sink!.end();
      this.done();
    } else if (this.mode === STREAM) {
      this.push(null);
    }
  }

  /** The upstream body failed (reset, idle-body timeout). */
  fail(err: Error): void {
    // After destroy() (the client left) undici reports the abort it was asked for: nothing to do.
    if (this.destroyed) return;
    this.finished = true;
    if (this.mode === STREAM) {
      this.destroy(err);
    } else if (this.mode === SINK) {
      this.done(err);
      this.sinkError!(err);
    } else {
      // Nobody reads yet: keep the error for the consumer, but release the upstream now.
      this.failure = err;
      this.done(err);
    }
  }

  /**
   * Writes the body to `res` directly and ends it, unless a Readable consumer already took the body
   * (then it returns false and the caller pipes). `onError` runs if the upstream fails mid-body.
   */
  sinkTo(res: ServerResponse, onError: (err: Error) => void): boolean {
    if (this.mode !== PENDING || this.destroyed) return false;
    this.mode = SINK;
    this.sink = res;
    this.sinkError = onError;
    const chunks = this.pending;
    this.pending = undefined;
    if (this.failure) {
      onError(this.failure);
      return true;
    }
    if (this.finished) {
      if (chunks === undefined) res.end();
      else if (chunks.length === 1) res.end(chunks[0]);
      else {
        for (const c of chunks) res.write(c);
        res.end();
      }
      this.done();
      return true;
    }
    let full = false;
    if (chunks) for (const c of chunks) full = !res.write(c);
    if (full) this.pauseUntilDrain(this.controller!);
    else this.controller?.resume();
    return true;
  }

  private pauseUntilDrain(controller: Controller): void {
    controller.pause();
    this.resumeOnDrain ??= () => this.controller?.resume();
    this.sink!.once("drain", this.resumeOnDrain);
  }

  private done(err?: Error): void {
    const onDone = this.onDone;
    if (onDone) {
      this.onDone = undefined;
      onDone(err);
    }
  }

  override _read(): void {
    if (this.mode === PENDING) {
      // The first Readable consumer: hand over what arrived, then stream.
      this.mode = STREAM;
      // A failure after this point is the consumer's to handle; this listener keeps an unheard
      // 'error' from crashing the process (the dispatcher has already counted and released it).
      this.on("error", ignoreError);
      const chunks = this.pending;
      this.pending = undefined;
      if (chunks) for (const c of chunks) this.push(c);
      if (this.failure) this.destroy(this.failure);
      else if (this.finished) this.push(null);
      else this.controller?.resume();
      return;
    }
    this.controller?.resume();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    if (!this.finished && this.controller && !this.controller.aborted) {
      this.controller.abort(err ?? new undiciErrors.RequestAbortedError());
    }
    this.done(err ?? undefined);
    // Only a Readable consumer hears the error; unread bodies are destroyed quietly.
    cb(this.mode === STREAM ? err : null);
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
    const body = new UpstreamBody();
    body.controller = controller;
    this.body = body;
    this.resolve({ status: statusCode, headers, body });
  }

  onResponseData(_controller: Controller, chunk: Buffer): void {
    this.body?.deliver(chunk);
  }

  onResponseEnd(_controller: Controller, trailers: Record<string, string | string[] | undefined>): void {
    const body = this.body;
    if (!body) return;
    for (const k in trailers) {
      const v = trailers[k];
      body.trailers[k] = Array.isArray(v) ? v.join(", ") : (v ?? "");
    }
    body.finish();
  }

  onResponseError(_controller: Controller, err: Error): void {
    if (this.body) this.body.fail(err);
    else this.reject(this.abortReason ?? err);
  }
}
