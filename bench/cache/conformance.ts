/**
 * npm run conformance:cache — runs the HTTP WG cache test suite (http-tests/cache-tests) against the
 * gateway on config/examples/cache-tests.yaml. CT_DIR points at a checkout after `npm install --omit=dev`.
 * Prints `cache-tests: N passed, M failed` and writes bench/results/cache-tests.json.
 * "passed" counts results the suite itself shows as ✅ (dependencies honoured, as on cache-tests.fyi);
 * "failed" counts ⛔️ and ⚠️ plus setup/harness/dependency failures. Informational checks (Y/N) are listed apart.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parse, stringify } from "yaml";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const ct = process.env.CT_DIR;
if (!ct) {
  process.stderr.write(
    "CT_DIR must point at a checkout of http-tests/cache-tests (after npm install --omit=dev)\n",
  );
  process.exit(2);
}
const ctDir = resolve(ct);
const node = process.execPath;
const children: ChildProcess[] = [];
const stopAll = () => {
  for (const c of children) if (c.exitCode === null) c.kill("SIGTERM");
};
process.on("exit", stopAll);

async function waitFor(url: string, ms: number): Promise<void> {
  const until = Date.now() + ms;
  for (;;) {
    try {
      await fetch(url, { signal: AbortSignal.timeout(500) });
      return;
    } catch {
      if (Date.now() > until) throw new Error(`${url} did not come up`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

function start(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = {}): ChildProcess {
  const c = spawn(cmd, args, {
    cwd,
    env: { ...process.env, ...env },
    stdio: ["ignore", "ignore", "inherit"],
  });
  children.push(c);
  return c;
}

// Ports follow the contract (origin 8000, gateway 8080, admin 9090); CT_*_PORT override them when busy.
const originPort = Number(process.env.CT_ORIGIN_PORT ?? 8000);
const gatewayPort = Number(process.env.CT_GATEWAY_PORT ?? 8080);
const adminPort = Number(process.env.CT_ADMIN_PORT ?? 9090);
let configFile = join(root, "config/examples/cache-tests.yaml");
if (originPort !== 8000 || gatewayPort !== 8080 || adminPort !== 9090) {
  const cfg = parse(readFileSync(configFile, "utf8"));
  cfg.server.listen.port = gatewayPort;
  cfg.admin.listen.port = adminPort;
  cfg.services.origin.endpoints.local[0].url = `http://127.0.0.1:${originPort}`;
  const dir = mkdtempSync(join(tmpdir(), "edgeway-ct-"));
  configFile = join(dir, "cache-tests.yaml");
  writeFileSync(configFile, stringify(cfg));
}

async function portBusy(port: number): Promise<boolean> {
  const { connect } = await import("node:net");
  return new Promise((r) => {
    const s = connect({ host: "127.0.0.1", port }, () => {
      s.destroy();
      r(true);
    });
    s.once("error", () => r(false));
  });
}
for (const p of [originPort, gatewayPort, adminPort]) {
  if (await portBusy(p)) {
    process.stderr.write(`port ${p} is busy; set CT_ORIGIN_PORT / CT_GATEWAY_PORT / CT_ADMIN_PORT\n`);
    process.exit(2);
  }
}

// The suite's server listens on every interface; this preload pins its `listen(port)` to loopback.
const LOOPBACK_ONLY = `data:text/javascript,${encodeURIComponent(
  'import http from "node:http"; const l = http.Server.prototype.listen; http.Server.prototype.listen = function (...a) { return typeof a[0] === "number" || typeof a[0] === "string" ? l.call(this, Number(a[0]), "127.0.0.1", ...a.slice(1)) : l.apply(this, a); };',
)}`;
start(node, ["--import", LOOPBACK_ONLY, "test-engine/server/server.mjs"], ctDir, {
  npm_config_port: String(originPort),
  npm_package_config_port: String(originPort),
  npm_config_protocol: "http",
  npm_config_pidfile: join(tmpdir(), `edgeway-ct-origin-${process.pid}.pid`),
});
await waitFor(`http://127.0.0.1:${originPort}/`, 10_000);
start(node, [join(root, "bin/edgeway.js"), "gateway", "--config", configFile], root);
await waitFor(`http://127.0.0.1:${adminPort}/healthz`, 15_000);

const out = await new Promise<string>((resolveOut, reject) => {
  const c = spawn(node, ["--no-warnings", "test-engine/cli.mjs"], {
    cwd: ctDir,
    env: {
      ...process.env,
      npm_config_base: `http://127.0.0.1:${gatewayPort}`,
      npm_config_id: process.env.CT_ID ?? "",
      npm_package_config_id: "",
    },
    stdio: ["ignore", "pipe", "inherit"],
  });
  let text = "";
  c.stdout.on("data", (d: Buffer) => {
    text += d.toString();
  });
  c.once("error", reject);
  c.once("close", (code) => (code === 0 ? resolveOut(text) : reject(new Error(`suite exited ${code}`))));
});
stopAll();
if (process.env.CT_ID) {
  process.stdout.write(out);
  process.exit(0);
}

const results = JSON.parse(out) as Record<string, unknown>;
const tests = (await import(pathToFileURL(join(ctDir, "tests/index.mjs")).href)).default as {
  id: string;
  tests: { id: string; kind?: string }[];
}[];
const { determineTestResult, resultTypes } = await import(
  pathToFileURL(join(ctDir, "test-engine/lib/results.mjs")).href
);
const byType: Record<string, string[]> = {};
for (const suite of tests) {
  for (const t of suite.tests) {
    const r = determineTestResult(tests, t.id, results);
    const type = Object.keys(resultTypes).find((k) => resultTypes[k] === r) ?? "unknown";
    byType[type] ??= [];
    byType[type].push(t.id);
  }
}
const passed = byType.pass?.length ?? 0;
const failedTypes = ["fail", "optional_fail", "setup_fail", "harness_fail", "dependency_fail", "retry"];
const failedIds = failedTypes.flatMap((k) => byType[k] ?? []);
const summary = {
  suite: "http-tests/cache-tests",
  gateway: "config/examples/cache-tests.yaml",
  date: new Date().toISOString(),
  passed,
  failed: failedIds.length,
  counts: Object.fromEntries(Object.entries(byType).map(([k, v]) => [k, v.length])),
  failures: Object.fromEntries(failedTypes.map((k) => [k, byType[k] ?? []])),
  checks: { yes: byType.yes ?? [], no: byType.no ?? [] },
  raw: results,
};
mkdirSync(join(root, "bench/results"), { recursive: true });
writeFileSync(join(root, "bench/results/cache-tests.json"), `${JSON.stringify(summary, null, 2)}\n`);
process.stdout.write(`cache-tests: ${passed} passed, ${failedIds.length} failed\n`);
