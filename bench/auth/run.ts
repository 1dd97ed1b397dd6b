/**
 * Token guard benchmark: verified tokens per second per core for ES256, RS256 and EdDSA.
 *   1. in process, one core: the guard's full check (TokenGuard.verifyJwt: structure, duplicate names,
 *      jose jwtVerify, claim policy, revocation rules) against raw jose jwtVerify on the same tokens;
 *   2. through the gateway: one gateway process (1 worker) with the auth filter on the route vs the same
 *      route without it, loaded by autocannon; req/s normalised by the gateway's CPU seconds.
 * Usage: npm run bench:auth [-- --seconds 5 --tokens 2000]
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { createLocalJWKSet, jwtVerify } from "jose";
import pino from "pino";
import { stringify } from "yaml";
import { authGlobalSchema } from "../../gateway/auth/config.ts";
import { TokenGuard } from "../../gateway/auth/guard.ts";
import { KeySource } from "../../gateway/auth/keys.ts";
import { AuthStore } from "../../gateway/auth/store.ts";
import { type Alg, AUDIENCE, ISSUER, JWKS_FILE, mint } from "../../test/gateway/auth/tokens.ts";
import { cpuSeconds } from "../lib/proc.ts";

/** autocannon ships no types; only what this bench uses is declared. */
const autocannon = createRequire(import.meta.url)("autocannon") as (opts: {
  url: string;
  connections: number;
  duration: number;
  requests: {
    method: string;
    path: string;
    setupRequest: (req: Record<string, unknown>) => Record<string, unknown>;
  }[];
}) => Promise<{ non2xx: number; requests: { average: number; total: number } }>;

const REPO = new URL("../../", import.meta.url).pathname;
const { values } = parseArgs({
  options: { seconds: { type: "string", default: "5" }, tokens: { type: "string", default: "2000" } },
});
const SECONDS = Number(values.seconds);
/** Requests per second of the fixed-rate runs (below what one core sustains with the guard). */
const FIXED_RATE = 800;
const N = Number(values.tokens);
const ALGS: Alg[] = ["ES256", "RS256", "EdDSA"];

const globalCfg = authGlobalSchema.parse({
  issuer: ISSUER,
  audience: AUDIENCE,
  jwks: { file: JWKS_FILE, refreshInterval: "1h" },
  accessTokens: { maxLifetime: "1h" },
});
const jwks = (await import(JWKS_FILE, { with: { type: "json" } })).default;

async function tokensFor(alg: Alg): Promise<string[]> {
  return Promise.all(
    Array.from({ length: N }, () =>
      mint("access", { alg, claims: { exp: Math.floor(Date.now() / 1000) + 3000 } }),
    ),
  );
}

/**
 * Operations per CPU second of this process (all its threads: WebCrypto verifies on the libuv pool), for
 * about `ms` milliseconds, 16 in flight. Per CPU second rather than per wall second: on a shared machine
 * the wall clock also counts time other processes ran.
 */
async function opsPerCpuSecond(
  tokens: string[],
  op: (t: string) => Promise<unknown>,
  ms: number,
): Promise<number> {
  for (let i = 0; i < 200; i++) await op(tokens[i % tokens.length]!); // warm-up
  let n = 0;
  const cpu0 = process.cpuUsage();
  const start = performance.now();
  while (performance.now() - start < ms) {
    const batch = [];
    for (let i = 0; i < 16; i++) batch.push(op(tokens[n++ % tokens.length]!));
    await Promise.all(batch);
  }
  const cpu = process.cpuUsage(cpu0);
  return n / ((cpu.user + cpu.system) / 1e6);
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function inProcess(tokensByAlg: Map<Alg, string[]>) {
  const logger = pino({ level: "silent" });
  const keys = new KeySource(globalCfg.jwks, logger);
  await keys.ready();
  const store = new AuthStore(undefined, logger);
  const guard = new TokenGuard(globalCfg, keys, store);
  const local = createLocalJWKSet(jwks);
  const opts = { issuer: ISSUER, audience: AUDIENCE, algorithms: globalCfg.algorithms, typ: "at+jwt" };
  const rows = [];
  for (const alg of ALGS) {
    const tokens = tokensByAlg.get(alg)!;
    const raw: number[] = [];
    const guarded: number[] = [];
    // Interleaved rounds so both see the same machine conditions.
    for (let round = 0; round < 11; round++) {
      raw.push(await opsPerCpuSecond(tokens, (t) => jwtVerify(t, local, opts), 300));
      guarded.push(await opsPerCpuSecond(tokens, (t) => guard.verifyJwt(t, "access"), 300));
    }
    const r = median(raw);
    const g = median(guarded);
    rows.push({
      alg,
      rawJwtVerify: Math.round(r),
      guard: Math.round(g),
      overheadPct: Math.round((r / g - 1) * 1000) / 10,
    });
  }
  keys.close();
  await store.close();
  return rows;
}

function spawnNode(args: string[]): ChildProcess {
  return spawn(join(REPO, "node_modules/.bin/node"), args, {
    cwd: REPO,
    stdio: ["ignore", "pipe", "inherit"],
  });
}

function firstLine(p: ChildProcess): Promise<string> {
  return new Promise((resolve) => {
    let buf = "";
    p.stdout!.on("data", (c: Buffer) => {
      buf += c;
      const i = buf.indexOf("\n");
      if (i !== -1) resolve(buf.slice(0, i));
    });
  });
}

async function waitFor(url: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    try {
      await (await fetch(url)).text();
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw new Error(`${url} did not come up`);
}

async function load(
  url: string,
  path: string,
  tokens: string[] | undefined,
  rate?: number,
): Promise<{ rps: number; total: number }> {
  let i = 0;
  const result = await autocannon({
    url,
    connections: 32,
    duration: SECONDS,
    ...(rate ? { overallRate: rate } : {}),
    requests: [
      {
        method: "GET",
        path,
        setupRequest: (req: Record<string, unknown>) =>
          tokens ? { ...req, headers: { authorization: `Bearer ${tokens[i++ % tokens.length]}` } } : req,
      },
    ],
  });
  if (result.non2xx > 0) throw new Error(`${result.non2xx} non-2xx answers`);
  return { rps: result.requests.average, total: result.requests.total };
}

async function throughGateway(tokensByAlg: Map<Alg, string[]>) {
  const up = spawnNode(["bench/proxy/upstream.ts", "0"]);
  const upPort = Number(await firstLine(up));
  const dir = mkdtempSync(join(tmpdir(), "edgeway-bench-auth-"));
  const port = 20000 + Math.floor(Math.random() * 20000);
  const file = join(dir, "gateway.yaml");
  writeFileSync(
    file,
    stringify({
      server: { listen: { host: "127.0.0.1", port }, workers: 1 },
      admin: { listen: { host: "127.0.0.1", port: port + 1 } },
      services: { up: { endpoints: { local: [{ url: `http://127.0.0.1:${upPort}` }] } } },
      auth: {
        issuer: ISSUER,
        audience: AUDIENCE,
        jwks: { file: JWKS_FILE },
        accessTokens: { maxLifetime: "1h" },
      },
      routes: [
        { name: "open", match: { path: "/open" }, service: "up", rewritePrefix: "/" },
        { name: "api", match: { path: "/api" }, service: "up", filters: [{ auth: { mode: "accessToken" } }] },
        {
          name: "raw",
          match: { path: "/raw" },
          service: "up",
          rewritePrefix: "/",
          filters: [{ benchRawJwt: {} }],
        },
      ],
      telemetry: { logs: { level: "warn", access: false } },
    }),
  );
  const gw = spawnNode(["bench/auth/gateway-entry.ts", file, JWKS_FILE, ISSUER, AUDIENCE]);
  try {
    await waitFor(`http://127.0.0.1:${port + 1}/healthz`);
    // Saturating load for throughput, then a fixed rate below saturation for CPU per request: at equal
    // rates both routes get the same batching, so the difference is what the filter costs.
    const measure = async (path: string, tokens: string[] | undefined) => {
      const c0 = cpuSeconds(gw.pid!);
      const t0 = performance.now();
      const { rps } = await load(`http://127.0.0.1:${port}`, path, tokens);
      const cores = (cpuSeconds(gw.pid!) - c0) / ((performance.now() - t0) / 1000);
      const c1 = cpuSeconds(gw.pid!);
      const { total } = await load(`http://127.0.0.1:${port}`, path, tokens, FIXED_RATE);
      const cpuUsPerReq = ((cpuSeconds(gw.pid!) - c1) * 1e6) / total;
      return {
        rps: Math.round(rps),
        cpuCores: Math.round(cores * 100) / 100,
        cpuUsPerReq: Math.round(cpuUsPerReq),
        perCore: Math.round(1e6 / cpuUsPerReq),
      };
    };
    // Same route shape with no filter, with raw jwtVerify only, and with the guard.
    const rows = [];
    const base = await measure("/open/1k", undefined);
    rows.push({ scenario: "no filter", ...base, addedUsPerReq: 0, vsRawPct: 0 });
    for (const alg of ALGS) {
      const tokens = tokensByAlg.get(alg)!;
      const raw = await measure("/raw/1k", tokens);
      const guard = await measure("/api/1k", tokens);
      const rawAdded = raw.cpuUsPerReq - base.cpuUsPerReq;
      const guardAdded = guard.cpuUsPerReq - base.cpuUsPerReq;
      rows.push({ scenario: `raw jwtVerify ${alg}`, ...raw, addedUsPerReq: rawAdded, vsRawPct: 0 });
      rows.push({
        scenario: `guard ${alg}`,
        ...guard,
        addedUsPerReq: guardAdded,
        // CPU per verified request through the gateway, guard vs raw jwtVerify (the 15% target).
        vsRawPct: Math.round((guard.cpuUsPerReq / raw.cpuUsPerReq - 1) * 1000) / 10,
      });
    }
    return rows;
  } finally {
    gw.kill("SIGKILL");
    up.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  }
}

const tokensByAlg = new Map<Alg, string[]>();
for (const alg of ALGS) tokensByAlg.set(alg, await tokensFor(alg));
console.log(`node ${process.version}, ${N} distinct tokens per algorithm\n`);
console.log("In process: verified tokens per CPU second (median of 11 interleaved rounds)");
console.table(await inProcess(tokensByAlg));
console.log(
  `Through the gateway (1 worker), autocannon 32 connections, GET 1 KiB; rps saturating, CPU per request at ${FIXED_RATE} req/s:`,
);
console.table(await throughGateway(tokensByAlg));
