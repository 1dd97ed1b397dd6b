/**
 * The bench's gateway process: the normal gateway plus one bench-only filter, `benchRawJwt`, that does
 * nothing but jose's jwtVerify on the bearer token. A route with it next to a route with the `auth`
 * filter compares the guard with raw jwtVerify through the same gateway, in the same process and run.
 * Usage (by run.ts): node bench/auth/gateway-entry.ts <config.yaml>
 */
import { readFileSync } from "node:fs";
import { createLocalJWKSet, jwtVerify } from "jose";
import { z } from "zod";
import { GatewayError } from "../../gateway/core/problem.ts";
import type { FilterFactory } from "../../gateway/core/types.ts";
import { FILTERS } from "../../gateway/filters.ts";
import { runGateway } from "../../gateway/main.ts";

const [configFile, jwksFile, issuer, audience] = process.argv.slice(2) as [string, string, string, string];
const local = createLocalJWKSet(JSON.parse(readFileSync(jwksFile, "utf8")));
const opts = { issuer, audience, algorithms: ["ES256", "RS256", "EdDSA"], typ: "at+jwt" };

const rawJwt: FilterFactory<Record<string, never>> = {
  name: "benchRawJwt",
  schema: z.strictObject({}),
  create: () => ({
    name: "benchRawJwt",
    wrap: (next) => async (ex) => {
      const h = ex.incoming.headers.authorization ?? "";
      try {
        await jwtVerify(h.slice(7), local, opts);
      } catch {
        throw new GatewayError(401, "invalid_token", "rejected");
      }
      return next(ex);
    },
  }),
};
(FILTERS as Record<string, () => Promise<FilterFactory<Record<string, never>>>>).benchRawJwt = async () =>
  rawJwt;
await runGateway(configFile);
