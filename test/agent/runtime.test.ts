import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import t, { type Test } from "tap";
import { AGENT_ENV, AGENT_NODE_FLAGS, missingRuntimeSettings } from "../../agent/runtime.ts";
import { freePort } from "../../lib/net/free-port.ts";
import { npmScript } from "../helpers/npm-script.ts";

t.test("the agent's flags and environment are added only where the launcher did not set them", async (t) => {
  t.same(missingRuntimeSettings([], {}), { flags: [...AGENT_NODE_FLAGS], env: { ...AGENT_ENV } });
  t.same(missingRuntimeSettings([...AGENT_NODE_FLAGS], { ...AGENT_ENV }), { flags: [], env: {} });
  const mine = missingRuntimeSettings(["--max_semi_space_size=8", "--opt", "--inspect"], {
    MALLOC_ARENA_MAX: "4",
  });
  t.same(
    mine.flags,
    ["--no-maglev", "--no-sparkplug", "--optimize-for-size"],
    "the launcher's own setting of a flag wins",
  );
  t.same(mine.env, {}, "and of an environment variable");
});

function procEntries(pid: number, file: "cmdline" | "environ"): string[] {
  return readFileSync(`/proc/${pid}/${file}`, "utf8").split("\0").filter(Boolean);
}

/** A launcher that gives only the young-generation flag (`npx edgeway agent` gives none). */
const PARTIAL_LAUNCHER = ["--max-semi-space-size=1"];

async function startDaemon(
  t: Test,
  cacheDir: string,
  extraEnv: Record<string, string> = {},
  nodeFlags: string[] = PARTIAL_LAUNCHER,
): Promise<{ child: ChildProcess; cmdline: string[]; environ: string[] }> {
  const dir = mkdtempSync(join(tmpdir(), "edgeway-agent-runtime-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, "agent.yaml");
  writeFileSync(
    file,
    `agent:\n  admin:\n    listen: 127.0.0.1:${await freePort()}\n  shutdownGrace: 1s\ntelemetry:\n  logs:\n    level: warn\ndb:\n  metrics:\n    enabled: false\n  insight:\n    job:\n      enabled: false\n`,
  );
  const env: NodeJS.ProcessEnv = { ...process.env, NODE_COMPILE_CACHE: cacheDir, ...extraEnv };
  for (const k of ["MALLOC_ARENA_MAX", "EDGEWAY_AGENT_RUNTIME", "EDGEWAY_AGENT_EXEC"]) {
    if (!(k in extraEnv)) delete env[k];
  }
  const child = spawn(process.execPath, [...nodeFlags, "bin/edgeway.js", "agent", "--config", file], {
    env,
    stdio: ["ignore", "ignore", "pipe"],
  });
  t.teardown(() => {
    child.kill("SIGKILL");
  });
  let stderr = "";
  await new Promise<void>((resolve, reject) => {
    child.stderr!.on("data", (d: Buffer) => {
      stderr += d.toString();
      if (stderr.includes("admin on http://")) resolve();
    });
    child.once("exit", (code) => reject(new Error(`agent exited ${code}: ${stderr}`)));
  });
  // Same PID throughout: process.execve replaces the image, the launcher's child handle stays valid.
  const pid = child.pid!;
  return { child, cmdline: procEntries(pid, "cmdline"), environ: procEntries(pid, "environ") };
}

async function stop(child: ChildProcess): Promise<number | null> {
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  child.kill("SIGTERM");
  return exited;
}

t.test("the daemon runs with its own flags and without the type stripper, cold cache or warm", async (t) => {
  const cache = mkdtempSync(join(tmpdir(), "edgeway-compile-cache-"));
  t.teardown(() => rmSync(cache, { recursive: true, force: true }));

  const cold = await startDaemon(t, cache);
  for (const flag of AGENT_NODE_FLAGS) t.ok(cold.cmdline.includes(flag), `started with ${flag}`);
  t.ok(
    cold.cmdline.indexOf("--max-semi-space-size=1") === cold.cmdline.lastIndexOf("--max-semi-space-size=1"),
  );
  t.ok(cold.environ.includes("MALLOC_ARENA_MAX=2"));
  // Cold cache: the image was replaced to add the flags, then again once the stripped code was cached.
  t.ok(cold.environ.includes("EDGEWAY_AGENT_EXEC=2"), "two replacements on a cold cache");
  t.equal(await stop(cold.child), 0, "SIGTERM: exit 0");

  const warm = await startDaemon(t, cache);
  t.ok(warm.environ.includes("EDGEWAY_AGENT_EXEC=1"), "one replacement (the flags) on a warm cache");
  t.equal(await stop(warm.child), 0);

  const npm = npmScript("agent");
  t.same(
    missingRuntimeSettings(npm.nodeFlags, npm.env),
    { flags: [], env: {} },
    "npm run agent (and the chart and the unit, which run its command) gives every setting",
  );
  const launched = await startDaemon(t, cache, npm.env, npm.nodeFlags);
  t.notOk(
    launched.environ.some((e) => e.startsWith("EDGEWAY_AGENT_EXEC=")),
    "so on a warm cache its process is never replaced",
  );
  for (const flag of AGENT_NODE_FLAGS) t.ok(launched.cmdline.includes(flag));
  t.equal(await stop(launched.child), 0);

  const off = await startDaemon(t, cache, { EDGEWAY_AGENT_RUNTIME: "default" });
  t.notOk(off.cmdline.includes("--no-opt"), "EDGEWAY_AGENT_RUNTIME=default keeps the launcher's flags");
  t.notOk(off.environ.some((e) => e.startsWith("EDGEWAY_AGENT_EXEC=")));
  t.equal(await stop(off.child), 0);
});

/** What a process running the agent's default jobs has loaded (a fresh process, nothing else imported). */
function loadedBy(configText: string): { files: string[]; builtins: string[] } {
  const script = `
    import { createRequire } from "node:module";
    import { parseAgentConfig } from "./agent/config.ts";
    import { agentTelemetry, createJobs } from "./agent/daemon.ts";
    import { AGENT_MODULES } from "./agent/modules.ts";
    const config = parseAgentConfig(${JSON.stringify(configText)}, AGENT_MODULES);
    const telemetry = agentTelemetry(config);
    const jobs = await createJobs(config, AGENT_MODULES, telemetry);
    await import("./agent/admin/server.ts");
    process.stdout.write(JSON.stringify({
      files: Object.keys(createRequire(import.meta.url).cache),
      builtins: process.moduleLoadList.filter((m) => m.startsWith("NativeModule ")),
    }));
    for (const j of jobs) await j.close?.();
    await telemetry.shutdown();
  `;
  const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], {
    encoding: "utf8",
    env: { ...process.env, EDGEWAY_PG_URL: "postgres://nobody@127.0.0.1:1/none" },
  });
  if (r.status !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout);
}

t.test("only what the configuration uses is loaded", async (t) => {
  const quiet = "telemetry:\n  logs:\n    level: silent\n";
  const plain = loadedBy(quiet);
  const has = (l: { files: string[] }, s: string) => l.files.some((f) => f.includes(s));
  t.ok(has(plain, "/node_modules/pg/"), "the default PostgreSQL jobs load the driver");
  for (const absent of [
    "/@aws-sdk/",
    "/etcd3/",
    "/@grpc/",
    "/@opentelemetry/sdk-trace",
    "/@opentelemetry/exporter-trace",
    "/@opentelemetry/core/",
    "/prom-client/lib/pushgateway",
    "/prom-client/lib/cluster",
  ]) {
    t.notOk(has(plain, absent), `no ${absent} without the feature that needs it`);
  }
  t.notOk(
    plain.builtins.includes("NativeModule internal/deps/undici/undici"),
    "node:http without its lazy WebSocket export (undici)",
  );

  const noDb = loadedBy(
    `${quiet}db:\n  metrics:\n    enabled: false\n  insight:\n    job:\n      enabled: false\n`,
  );
  t.notOk(has(noDb, "/node_modules/pg/"), "no driver without a PostgreSQL job");

  const dir = mkdtempSync(join(tmpdir(), "edgeway-agent-backups-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const traced = loadedBy(
    `telemetry:\n  logs:\n    level: silent\n  tracing:\n    endpoint: http://127.0.0.1:1/v1/traces\nbackup:\n  enabled: true\n  storage:\n    type: fs\n    path: ${dir}\n`,
  );
  t.ok(has(traced, "/@opentelemetry/sdk-trace-base/"), "a tracing endpoint loads the SDK");
  t.ok(has(traced, "/@aws-sdk/client-s3/"), "enabled backups load their storage clients");
});
