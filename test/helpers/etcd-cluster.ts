/**
 * Scratch etcd clusters for tests and benches: N members on random loopback ports in a temp dir,
 * with fast raft timings. Installs Debian's etcd-server first when missing (.ci/etcd-deps.sh).
 * Members can be killed, paused (SIGSTOP) and restarted to simulate outages and partitions.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { closeSync, existsSync, mkdtempSync, openSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { freePort } from "../../lib/net/free-port.ts";

export { freePort } from "../../lib/net/free-port.ts";

const REPO = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

/** Runs the project's install script once per process (it is a no-op when all is installed). */
let depsChecked = false;
export function ensureEtcdInstalled(): void {
  if (depsChecked) return;
  execFileSync("bash", [join(REPO, ".ci", "etcd-deps.sh")], { stdio: ["ignore", "inherit", "inherit"] });
  depsChecked = true;
}

export interface EtcdMember {
  readonly name: string;
  readonly clientUrl: string;
  readonly peerUrl: string;
  readonly dataDir: string;
  readonly pid: number | undefined;
  /** Sends a signal to the member (SIGKILL, SIGSTOP, SIGCONT…). */
  signal(sig: NodeJS.Signals): void;
  /** Stops the member (SIGTERM, then SIGKILL) and waits for the exit. */
  stop(): Promise<void>;
  /** Starts a stopped member again with the same data dir. */
  start(): Promise<void>;
  readonly running: boolean;
}

export interface EtcdCluster {
  readonly members: EtcdMember[];
  /** Client URLs of every member, e.g. http://127.0.0.1:34567 */
  readonly endpoints: string[];
  readonly dir: string;
  stop(): Promise<void>;
}

export interface EtcdClusterOptions {
  size?: number;
  /** Raft heartbeat and election timeout in ms (etcd defaults: 100 and 1000). */
  heartbeatMs?: number;
  electionMs?: number;
  /** Keep the output of each member in <dir>/<name>.log (default true). */
  log?: boolean;
}

async function waitHealthy(url: string, deadline: number): Promise<void> {
  let last = "";
  while (Date.now() < deadline) {
    try {
      const res = await fetch(`${url}/health`, { signal: AbortSignal.timeout(1000) });
      const body = (await res.json()) as { health?: string | boolean };
      if (body.health === "true" || body.health === true) return;
      last = JSON.stringify(body);
    } catch (err) {
      last = (err as Error).message;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`etcd at ${url} not healthy: ${last}`);
}

export async function startEtcdCluster(opts: EtcdClusterOptions = {}): Promise<EtcdCluster> {
  ensureEtcdInstalled();
  const size = opts.size ?? 3;
  const dir = mkdtempSync(join(tmpdir(), "edgeway-etcd-"));
  for (let attempt = 1; ; attempt++) {
    const ports: number[] = [];
    while (ports.length < size * 2) {
      const p = await freePort();
      if (!ports.includes(p)) ports.push(p);
    }
    const specs = Array.from({ length: size }, (_, i) => ({
      name: `m${i}`,
      clientUrl: `http://127.0.0.1:${ports[2 * i]}`,
      peerUrl: `http://127.0.0.1:${ports[2 * i + 1]}`,
      dataDir: join(dir, `m${i}.etcd`),
    }));
    const initialCluster = specs.map((s) => `${s.name}=${s.peerUrl}`).join(",");
    const token = `edgeway-${process.pid}-${Date.now()}`;
    const members = specs.map((spec) => makeMember(spec, dir, initialCluster, token, opts));
    try {
      await Promise.all(members.map((m) => m.start()));
      return {
        members,
        endpoints: members.map((m) => m.clientUrl),
        dir,
        async stop() {
          await Promise.all(members.map((m) => m.stop()));
          rmSync(dir, { recursive: true, force: true });
        },
      };
    } catch (err) {
      await Promise.all(members.map((m) => m.stop()));
      for (const s of specs) rmSync(s.dataDir, { recursive: true, force: true });
      // A port taken between our probe and etcd's bind: try new ports a couple of times.
      if (attempt >= 3) {
        rmSync(dir, { recursive: true, force: true });
        throw err;
      }
    }
  }
}

function makeMember(
  spec: { name: string; clientUrl: string; peerUrl: string; dataDir: string },
  dir: string,
  initialCluster: string,
  token: string,
  opts: EtcdClusterOptions,
): EtcdMember {
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  const logFile = join(dir, `${spec.name}.log`);
  return {
    ...spec,
    get pid() {
      return child?.pid;
    },
    get running() {
      return child !== undefined && child.exitCode === null && child.signalCode === null;
    },
    signal(sig) {
      if (child?.pid && this.running) process.kill(child.pid, sig);
    },
    async start() {
      if (this.running) return;
      const fresh = !existsSync(spec.dataDir);
      const args = [
        `--name=${spec.name}`,
        `--data-dir=${spec.dataDir}`,
        `--listen-client-urls=${spec.clientUrl}`,
        `--advertise-client-urls=${spec.clientUrl}`,
        `--listen-peer-urls=${spec.peerUrl}`,
        `--initial-advertise-peer-urls=${spec.peerUrl}`,
        `--initial-cluster=${initialCluster}`,
        `--initial-cluster-token=${token}`,
        `--initial-cluster-state=${fresh ? "new" : "existing"}`,
        `--heartbeat-interval=${opts.heartbeatMs ?? 50}`,
        `--election-timeout=${opts.electionMs ?? 500}`,
        "--snapshot-count=10000",
        "--log-level=warn",
        "--logger=zap",
      ];
      const out = opts.log === false ? "ignore" : openSync(logFile, "a");
      const proc = spawn("etcd", args, { stdio: ["ignore", out, out] });
      child = proc;
      exited = new Promise((resolve) => proc.once("exit", () => resolve()));
      if (typeof out === "number") closeSync(out);
      // A single member cannot become healthy before a quorum exists: the caller starts all, then waits.
      const deadline = Date.now() + 15_000;
      await Promise.race([
        waitHealthy(spec.clientUrl, deadline),
        exited.then(() => {
          throw new Error(`etcd ${spec.name} exited at start (see ${logFile})`);
        }),
      ]);
    },
    async stop() {
      const proc = child;
      if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
      try {
        process.kill(proc.pid!, "SIGCONT");
        proc.kill("SIGTERM");
      } catch {
        // already gone
      }
      const timer = setTimeout(() => proc.kill("SIGKILL"), 3000);
      await exited;
      clearTimeout(timer);
    },
  };
}
