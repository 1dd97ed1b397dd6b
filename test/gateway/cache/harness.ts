/** Cache test helpers: keys on the shared Redis, and an identity stand-in for the token guard. */
import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import { request } from "undici";
import type { Handler } from "../../../gateway/core/types.ts";
import type { TestGateway } from "../../helpers/gateway.ts";

export { freePort } from "../../../lib/net/free-port.ts";

/** A unique Redis key prefix per test run on the shared Redis; `cleanup` deletes its keys. */
export function uniquePrefix(): string {
  return `edgeway-test:cache:${randomBytes(6).toString("hex")}:`;
}

export async function deleteKeys(url: string, prefix: string): Promise<void> {
  const r = new Redis(url);
  try {
    let cursor = "0";
    do {
      const [next, keys] = await r.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000);
      cursor = next;
      if (keys.length) await r.del(...keys);
    } while (cursor !== "0");
  } finally {
    r.disconnect();
  }
}

/**
 * Stands in for the token guard (gateway/auth): the test names the verified user in X-Test-User, and
 * this puts `{ sub, tenant }` in ex.state.auth before the route's filters run, as the guard does.
 */
export function injectIdentity(gw: TestGateway): void {
  for (const route of gw.gw.runtime.routes) {
    const inner = route.handler;
    const wrapped: Handler = (ex) => {
      const user = ex.incoming.headers["x-test-user"];
      if (typeof user === "string") {
        const [tenant, sub] = user.includes("/") ? user.split("/") : ["t1", user];
        ex.state.auth = { sub, tenant, clientId: "test", claims: { sub } };
      }
      return inner(ex);
    };
    (route as { handler: Handler }).handler = wrapped;
  }
}

/** A plain GET (undici.request: unlike fetch, it adds no Cache-Control of its own to conditional requests). */
export async function get(url: string, headers: Record<string, string> = {}) {
  const res = await request(url, { headers });
  const body = await res.body.text();
  const h = new Headers();
  for (const [k, v] of Object.entries(res.headers))
    if (v !== undefined) h.set(k, Array.isArray(v) ? v.join(", ") : v);
  return { status: res.statusCode, headers: h, body, xCache: h.get("x-cache") };
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
