import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import { get } from "node:http";
import { dirname } from "node:path";
import t from "tap";
import { freePort } from "../../lib/net/free-port.ts";
import { startUpstream } from "../helpers/gateway.ts";
import { currentRss, writeConfig } from "../helpers/spawn-gateway.ts";
import { pick, scrape, total } from "./prom.ts";

const ROOT = new URL("../../", import.meta.url).pathname;

/** One request on its own connection, so SO_REUSEPORT spreads them over the workers. */
function getFresh(port: number, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    get({ host: "127.0.0.1", port, path, agent: false }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
    }).on("error", reject);
  });
}

t.test("with server.workers: 2, /metrics on the admin port aggregates the whole process group", async (t) => {
  const up = await startUpstream((_req, res) => res.end("ok"));
  const [proxyPort, adminPort] = [await freePort(), await freePort()];
  const file = writeConfig({
    server: { listen: { host: "127.0.0.1", port: proxyPort }, workers: 2, drainTimeout: "1s" },
    admin: { listen: { host: "127.0.0.1", port: adminPort } },
    services: { s: { endpoints: { local: [{ url: up.url }] } } },
    routes: [{ name: "all", match: { path: "/" }, service: "s" }],
    telemetry: { logs: { level: "info", access: true } },
  });
  const child: ChildProcess = spawn(process.execPath, ["bin/edgeway.js", "gateway", "--config", file], {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "pipe"],
  });
  const lines: Record<string, unknown>[] = [];
  let stderr = "";
  let buf = "";
  child.stdout!.on("data", (d: Buffer) => {
    buf += d.toString();
    let nl = buf.indexOf("\n");
    while (nl !== -1) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (line.startsWith("{")) lines.push(JSON.parse(line));
      nl = buf.indexOf("\n");
    }
  });
  child.stderr!.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
  t.teardown(async () => {
    if (child.exitCode === null) {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 8000);
      await exited;
      clearTimeout(timer);
    }
    await up.close();
    rmSync(dirname(file), { recursive: true, force: true });
  });

  const admin = `http://127.0.0.1:${adminPort}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    const ready = await fetch(`${admin}/readyz`).then(
      (r) => r.status === 200,
      () => false,
    );
    if (ready) break;
    if (Date.now() > deadline || child.exitCode !== null) {
      t.fail(`gateway not ready: ${stderr}`);
      return;
    }
    await new Promise((r) => setTimeout(r, 100));
  }

  const N = 300;
  for (let i = 0; i < N; i += 10) {
    const batch = Array.from({ length: 10 }, (_, k) => getFresh(proxyPort, `/item/${i + k}`));
    t.same(new Set(await Promise.all(batch)), new Set([200]));
  }
  // Access lines are written asynchronously by each worker; wait until all have arrived.
  const until = Date.now() + 10_000;
  const access = () => lines.filter((l) => l.type === "access");
  while (access().length < N && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
  const pids = new Set(access().map((l) => l.pid));
  t.equal(pids.size, 2, "both workers served requests");

  for (let scrapeNo = 1; scrapeNo <= 3; scrapeNo++) {
    const { samples, type } = await scrape(admin);
    t.equal(type, "text/plain; version=0.0.4; charset=utf-8");
    t.equal(
      total(samples, "edgeway_http_requests_total", { route: "all", status_class: "2xx" }),
      N,
      `scrape ${scrapeNo}: request count summed over both workers`,
    );
    t.equal(total(samples, "edgeway_http_request_duration_seconds_count", { route: "all" }), N);
    t.equal(
      total(samples, "edgeway_upstream_request_duration_seconds_count", { service: "s", endpoint: up.url }),
      N,
    );
    t.equal(total(samples, "edgeway_endpoint_healthy", { service: "s" }), 1, "health aggregates by min");
    t.equal(pick(samples, "edgeway_http_requests_total").length, 1, "one series, not one per worker");
    t.ok(pick(samples, "nodejs_heap_size_used_bytes").length > 0, "process metrics too");
  }

  // SIGHUP: every worker reloads; the reload counter counts the event once, not once per worker.
  child.kill("SIGHUP");
  const reloaded = () => lines.filter((l) => l.msg === "configuration reloaded");
  const until2 = Date.now() + 10_000;
  while (reloaded().length < 2 && Date.now() < until2) await new Promise((r) => setTimeout(r, 50));
  t.equal(new Set(reloaded().map((l) => l.pid)).size, 2, "both workers reloaded");
  const after = await scrape(admin);
  t.equal(total(after.samples, "edgeway_config_reloads_total", { result: "success" }), 1);

  // The primary's own metrics are part of the sum: its workers gauges, and its process memory.
  t.equal(total(after.samples, "edgeway_cluster_workers"), 2);
  t.equal(total(after.samples, "edgeway_cluster_workers_ready"), 2);
  t.equal(total(after.samples, "edgeway_cluster_worker_restarts_total"), 0);
  const group = [child.pid!, ...workerPids(child.pid!)];
  t.equal(group.length, 3, "a primary and two workers");
  let rss = 0;
  for (const pid of group) rss += await currentRss(pid);
  const reported = total((await scrape(admin)).samples, "process_resident_memory_bytes");
  t.ok(
    reported > rss * 0.9 && reported < rss * 1.1,
    `process_resident_memory_bytes ${reported} is the group's RSS ${rss} (primary included)`,
  );

  // A worker that does not answer fails the scrape with a problem, instead of sums that drop.
  const [stopped] = workerPids(child.pid!);
  process.kill(stopped!, "SIGSTOP");
  try {
    const res = await fetch(`${admin}/metrics`);
    t.equal(res.status, 503);
    const problem = (await res.json()) as { type: string; detail: string };
    t.match(problem.type, /metrics_unavailable$/);
    t.match(problem.detail, /1 of 2 workers sent their metrics in time/);
  } finally {
    process.kill(stopped!, "SIGCONT");
  }
  t.equal((await fetch(`${admin}/metrics`)).status, 200, "and the next scrape succeeds");

  // A worker that dies is replaced and counted.
  process.kill(stopped!, "SIGKILL");
  const until3 = Date.now() + 15_000;
  for (;;) {
    const { samples } = await scrape(admin);
    const replaced = total(samples, "edgeway_cluster_worker_restarts_total") === 1;
    if (replaced && total(samples, "edgeway_cluster_workers_ready") === 2) break;
    if (Date.now() > until3) {
      t.fail("the killed worker was not replaced");
      break;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  t.notOk(workerPids(child.pid!).includes(stopped!), "by a new process");
});

function workerPids(primary: number): number[] {
  return readFileSync(`/proc/${primary}/task/${primary}/children`, "utf8")
    .trim()
    .split(/\s+/)
    .filter(Boolean)
    .map(Number);
}
