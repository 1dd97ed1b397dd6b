/** A gateway with the token guard in front of a recording upstream, for the auth tests. */
import type { IncomingMessage } from "node:http";
import {
  serviceAt,
  startGateway,
  startUpstream,
  type TestGateway,
  type TestUpstream,
} from "../../helpers/gateway.ts";
import { AUDIENCE, ISSUER, JWKS_FILE } from "./tokens.ts";

export interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage["headers"];
  body: Buffer;
}

export interface AuthHarness {
  gw: TestGateway;
  up: TestUpstream;
  seen: Seen[];
  refresh(body: string | Buffer, headers?: Record<string, string>): Promise<Response>;
  api(token: string | undefined, headers?: Record<string, string>): Promise<Response>;
  /** Reason logged for a request (access-log field `auth`). */
  reasonOf(res: Response): string | undefined;
  admin(path: string, body: unknown): Promise<Response>;
  /** Resolves once the rules store is readable (Redis connected and synced). */
  storeReady(): Promise<void>;
  close(): Promise<void>;
}

export const ADMIN_TOKEN = "test-admin-token-0123456789";

export function authSection(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    issuer: ISSUER,
    audience: AUDIENCE,
    jwks: { file: JWKS_FILE },
    clockTolerance: "30s",
    refreshTokens: { maxLifetime: "30d", reuseGrace: "1s" },
    accessTokens: { maxLifetime: "1h" },
    ...over,
  };
}

export async function startAuthHarness(auth: Record<string, unknown> = authSection()): Promise<AuthHarness> {
  const seen: Seen[] = [];
  const up = await startUpstream((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      seen.push({
        method: req.method ?? "",
        url: req.url ?? "",
        headers: req.headers,
        body: Buffer.concat(chunks),
      });
      res.setHeader("content-type", "application/json");
      res.end('{"ok":true}');
    });
  });
  const gw = await startGateway({
    admin: { token: ADMIN_TOKEN },
    telemetry: { logs: { level: "info", access: true } },
    services: { s: serviceAt(up.url) },
    auth,
    routes: [
      {
        name: "token",
        match: { path: "/oauth/token" },
        service: "s",
        filters: [{ auth: { mode: "refreshToken", stripHeaders: ["x-auth-subject"] } }],
      },
      {
        name: "api",
        match: { path: "/api" },
        service: "s",
        filters: [
          {
            auth: {
              mode: "accessToken",
              forwardClaims: { sub: "x-auth-subject", client_id: "x-auth-client", scope: "x-auth-scope" },
              stripHeaders: ["x-auth-admin"],
            },
          },
        ],
      },
    ],
  });
  return {
    gw,
    up,
    seen,
    refresh: (body, headers = {}) =>
      fetch(`${gw.url}/oauth/token`, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded", ...headers },
        body,
      }),
    api: (token, headers = {}) =>
      fetch(`${gw.url}/api/thing`, {
        headers: { ...(token !== undefined ? { authorization: `Bearer ${token}` } : {}), ...headers },
      }),
    reasonOf(res) {
      const id = res.headers.get("x-request-id");
      const line = gw.logs.lines.find((l) => l.type === "access" && l.request_id === id);
      return line?.auth as string | undefined;
    },
    admin: (path, body) =>
      fetch(`${gw.adminUrl}${path}`, {
        method: "POST",
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" },
        body: JSON.stringify(body),
      }),
    async storeReady() {
      for (let i = 0; i < 100; i++) {
        const s = (await (await fetch(`${gw.adminUrl}/admin/auth/status`)).json()) as {
          store: { readable: boolean };
        };
        if (s.store.readable) return;
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error("the auth store did not become readable");
    },
    close: async () => {
      await gw.close();
      await up.close();
    },
  };
}

/** The access log is written when the response closes: give it a moment. */
export const settle = () => new Promise((r) => setTimeout(r, 20));
