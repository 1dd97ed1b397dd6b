import type { ServerResponse } from "node:http";
import type { HeaderMap } from "./types.ts";

/** Problem types: https://edgeway.dev/problems/<code> keeps them stable and documented (docs/errors.md). */
const PROBLEM_BASE = "https://edgeway.dev/problems/";

/**
 * A failure with an HTTP meaning. Thrown anywhere on the request path; the core turns it into an
 * RFC 9457 application/problem+json response. `code` is a short stable machine name (also a metric label).
 */
export class GatewayError extends Error {
  override name = "GatewayError";
  readonly status: number;
  readonly code: string;
  readonly headers: HeaderMap;
  readonly extra: Record<string, unknown> | undefined;
  constructor(
    status: number,
    code: string,
    detail: string,
    opts: { headers?: HeaderMap; extra?: Record<string, unknown>; cause?: unknown } = {},
  ) {
    super(detail, { cause: opts.cause });
    this.status = status;
    this.code = code;
    this.headers = opts.headers ?? {};
    this.extra = opts.extra;
  }
}

const TITLES: Record<number, string> = {
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  408: "Request Timeout",
  413: "Content Too Large",
  415: "Unsupported Media Type",
  422: "Unprocessable Content",
  429: "Too Many Requests",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Gateway Timeout",
};

export interface ProblemBody {
  type: string;
  title: string;
  status: number;
  detail: string;
  instance?: string;
  [extension: string]: unknown;
}

export function problemBody(
  status: number,
  code: string,
  detail: string,
  requestId?: string,
  extra?: Record<string, unknown>,
): ProblemBody {
  return {
    type: PROBLEM_BASE + code,
    title: TITLES[status] ?? "Error",
    status,
    detail,
    ...(requestId ? { instance: `urn:request:${requestId}`, request_id: requestId } : {}),
    ...extra,
  };
}

/** Writes a problem+json response; safe to call when headers may already be out (then it just ends). */
export function sendProblem(
  res: ServerResponse,
  status: number,
  code: string,
  detail: string,
  opts: { requestId?: string; headers?: HeaderMap; extra?: Record<string, unknown> } = {},
): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = JSON.stringify(problemBody(status, code, detail, opts.requestId, opts.extra));
  const headers: HeaderMap = {
    "content-type": "application/problem+json",
    "content-length": String(Buffer.byteLength(body)),
    "cache-control": "no-store",
    ...opts.headers,
  };
  if (opts.requestId) headers["x-request-id"] = opts.requestId;
  res.writeHead(status, headers as Record<string, string | string[]>);
  res.end(body);
}
