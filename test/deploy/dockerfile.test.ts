/**
 * What can be checked of deploy/Dockerfile without a Docker engine: its shape, that every file it copies
 * exists and is not excluded by .dockerignore, that its entrypoint is `npm start`'s command, and that the
 * programs run from a directory holding only what the image copies.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import {
  cpSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import t from "tap";
import { parse as parseYaml } from "yaml";
import { AGENT_NODE_FLAGS } from "../../agent/runtime.ts";
import { freePort } from "../../lib/net/free-port.ts";
import { npmScript } from "../helpers/npm-script.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

interface Instruction {
  op: string;
  args: string;
  stage: number;
}

function parseDockerfile(text: string): Instruction[] {
  const out: Instruction[] = [];
  let stage = -1;
  const lines = text.replace(/\\\n/g, " ").split("\n");
  for (const raw of lines) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    const m = /^([A-Z]+)\s+(.*)$/.exec(line);
    if (!m) throw new Error(`unparsed Dockerfile line: ${line}`);
    if (m[1] === "FROM") stage++;
    out.push({ op: m[1]!, args: m[2]!, stage });
  }
  return out;
}

/** .dockerignore matching for the pattern forms used here (names, dir/name, **\/name, *.ext). */
function ignored(path: string, patterns: string[]): boolean {
  for (const p of patterns) {
    if (p.startsWith("!")) throw new Error("negated .dockerignore patterns are not supported by this test");
    const re = new RegExp(
      `^${p
        .replace(/[.+^${}()|[\]\\]/g, "\\$&")
        .replace(/\*\*\//g, "(?:.*/)?")
        .replace(/\*/g, "[^/]*")}(?:/.*)?$`,
    );
    if (re.test(path)) return true;
  }
  return false;
}

const dockerfile = parseDockerfile(readFileSync(join(ROOT, "deploy/Dockerfile"), "utf8"));
const ignore = readFileSync(join(ROOT, ".dockerignore"), "utf8")
  .split("\n")
  .map((l) => l.trim())
  .filter((l) => l && !l.startsWith("#"));
const argDefaults = Object.fromEntries(
  dockerfile.filter((i) => i.op === "ARG").map((i) => i.args.split("=") as [string, string]),
);
const lastStage = Math.max(...dockerfile.map((i) => i.stage));
const runtime = dockerfile.filter((i) => i.stage === lastStage);
const copies = runtime
  .filter((i) => i.op === "COPY" && !i.args.startsWith("--from"))
  .map((i) => i.args.split(/\s+/))
  .map((parts) => ({ sources: parts.slice(0, -1), dest: parts[parts.length - 1]! }));
const exec = (op: string) => JSON.parse(runtime.find((i) => i.op === op)!.args) as string[];

t.test("multi-stage, Node 24 slim, production deps only, non-root", async (t) => {
  const froms = dockerfile
    .filter((i) => i.op === "FROM")
    .map((i) => i.args.replace(/\$\{(\w+)\}/g, (_m, k) => argDefaults[k]!));
  t.ok(froms.length >= 2, "at least two stages");
  for (const f of froms) t.match(f, /^node:24-[a-z]+-slim\b/, `${f} is a Node 24 slim base`);
  t.ok(
    dockerfile.some((i) => i.op === "RUN" && /npm ci --omit=dev/.test(i.args)),
    "npm ci --omit=dev",
  );
  const user = runtime.find((i) => i.op === "USER")!.args;
  const values = parseYaml(readFileSync(join(ROOT, "deploy/helm/edgeway/values.yaml"), "utf8"));
  t.equal(
    user,
    `${values.securityContext.runAsUser}:${values.securityContext.runAsGroup}`,
    "the chart's UID/GID",
  );
  t.not(user.split(":")[0], "0");
  const lock = readFileSync(join(ROOT, "package-lock.json"), "utf8");
  for (const arch of ["x64", "arm64"]) {
    t.ok(
      lock.includes(`"node_modules/@img/sharp-linux-${arch}"`),
      `sharp prebuilt for linux-${arch} is locked`,
    );
    t.ok(
      lock.includes(`"node_modules/@img/sharp-libvips-linux-${arch}"`),
      `libvips for linux-${arch} is locked`,
    );
  }
});

t.test("every copied path exists and is not excluded by .dockerignore", async (t) => {
  const depsCopy = dockerfile
    .find((i) => i.stage === 0 && i.op === "COPY")!
    .args.split(/\s+/)
    .slice(0, -1);
  for (const src of [...depsCopy, ...copies.flatMap((c) => c.sources)]) {
    t.ok(existsSync(join(ROOT, src)), `${src} exists`);
    t.notOk(ignored(src, ignore), `${src} is sent to the builder`);
  }
  for (const p of ["node_modules", "test/deploy/x.ts", ".git", "deploy/helm/edgeway", "bench/x"]) {
    t.ok(ignored(p, ignore), `${p} stays out of the build context`);
  }
});

t.test("the entrypoint is npm start's command, and the chart runs the npm scripts' commands", async (t) => {
  const entry = [...exec("ENTRYPOINT"), ...exec("CMD")];
  t.same(entry, npmScript("start").argv, "ENTRYPOINT + CMD = npm start");
  const chartCommand = (file: string) => {
    const text = readFileSync(join(ROOT, "deploy/helm/edgeway/templates", file), "utf8");
    return JSON.parse(/command: (\[.*\])/.exec(text)![1]!) as string[];
  };
  const start = npmScript("start");
  const agent = npmScript("agent");
  t.same(start.env, {}, "npm start sets no environment, which the entrypoint could not");
  t.same(chartCommand("gateway-deployment.yaml"), [...start.argv, "--config", "/etc/edgeway/gateway.yaml"]);
  t.same(chartCommand("agent-daemonset.yaml"), [...agent.argv, "--config", "/etc/edgeway/agent.yaml"]);
  const daemonset = readFileSync(join(ROOT, "deploy/helm/edgeway/templates/agent-daemonset.yaml"), "utf8");
  for (const [name, value] of Object.entries(agent.env)) {
    t.match(
      daemonset,
      `- name: ${name}\n              value: "${value}"`,
      `the agent container sets ${name}`,
    );
  }
  t.equal(agent.argv[0], "node", "npm run agent runs node, which the image has on PATH");
  t.ok(agent.argv.includes("bin/edgeway.js"), "and the same entry script");
});

async function waitFor(url: string, child: ChildProcess): Promise<Response> {
  const until = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`exited ${child.exitCode}`);
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
      if (res.ok) return res;
    } catch {}
    if (Date.now() > until) throw new Error(`no answer from ${url}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function stop(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null) return child.exitCode;
  child.kill("SIGTERM");
  return new Promise((r) => child.once("exit", (code) => r(code)));
}

const warmCache = runtime.find((i) => i.op === "RUN" && i.args.includes("globSync"));

t.test("the compile cache is warmed at build time, as the runtime user", async (t) => {
  const env = runtime.find((i) => i.op === "ENV" && i.args.startsWith("NODE_COMPILE_CACHE="));
  t.ok(env, "ENV NODE_COMPILE_CACHE is set");
  const dir = env!.args.split("=")[1]!;
  const user = runtime.find((i) => i.op === "USER")!.args;
  t.ok(
    runtime.some((i) => i.op === "RUN" && i.args.includes(`chown ${user} ${dir}`)),
    "the cache directory belongs to the runtime user",
  );
  t.ok(warmCache, "a RUN step loads every module");
  t.ok(
    runtime.indexOf(warmCache!) > runtime.findIndex((i) => i.op === "USER"),
    "it runs after USER: Node keeps one cache per UID",
  );
  t.ok(
    warmCache!.args.includes(`agent="${AGENT_NODE_FLAGS.join(" ")}"`),
    "and again with the agent's V8 flags, which are part of the cache key",
  );
});

t.test("the programs run from only what the image copies", async (t) => {
  // The image's /app: the COPY sources, plus node_modules standing in for the deps stage.
  const app = mkdtempSync(join(tmpdir(), "edgeway-image-"));
  t.teardown(() => rmSync(app, { recursive: true, force: true }));
  for (const c of copies) {
    for (const src of c.sources) {
      const dest =
        c.dest.endsWith("/") && c.sources.length > 1
          ? join(app, c.dest, src)
          : join(app, c.dest === "./" ? src : c.dest);
      cpSync(join(ROOT, src), dest, { recursive: true });
    }
  }
  symlinkSync(join(ROOT, "node_modules"), join(app, "node_modules"));
  // The image's build-time warm-up, as written in the Dockerfile, into a cache the runs below use.
  const cache = join(app, ".cache/node-compile");
  const env = { ...process.env, NODE_COMPILE_CACHE: cache };
  const warm = spawnSync("sh", ["-c", warmCache!.args.replace(/\bnode /g, `"${process.execPath}" `)], {
    cwd: app,
    env,
    encoding: "utf8",
  });
  t.equal(warm.status, 0, `the compile-cache warm-up runs: ${warm.stderr}`);
  t.ok(readdirSync(cache, { recursive: true }).length > 100, "and fills the cache");
  const run = (args: string[]) =>
    spawnSync(process.execPath, ["bin/edgeway.js", ...args], { cwd: app, encoding: "utf8", env });

  const check = run(["gateway", "check", "--config", "config/gateway.yaml"]);
  t.equal(check.status, 0, `gateway check with the image's default config: ${check.stderr}`);
  const preflight = run([
    "deploy",
    "preflight",
    "--target",
    "1.28",
    join(ROOT, "test/deploy/fixtures/k8s-1.24"),
  ]);
  t.equal(preflight.status, 1, "edgeway deploy preflight runs in the image");

  const [proxy, admin, origin, agentAdmin] = [
    await freePort(),
    await freePort(),
    await freePort(),
    await freePort(),
  ];
  writeFileSync(
    join(app, "gw.yaml"),
    [
      `server: { listen: { host: 127.0.0.1, port: ${proxy} }, drainTimeout: 2s }`,
      `admin: { listen: { host: 127.0.0.1, port: ${admin} } }`,
      `demoOrigin: { enabled: true, listen: { host: 127.0.0.1, port: ${origin} } }`,
      `services: { demo: { endpoints: { local: [ { url: "http://127.0.0.1:${origin}" } ] } } }`,
      "routes: [ { name: demo, service: demo } ]",
      "telemetry: { logs: { level: error } }",
      "",
    ].join("\n"),
  );
  const gateway = spawn(
    process.execPath,
    [...exec("ENTRYPOINT").slice(1), ...exec("CMD"), "--config", "gw.yaml"],
    {
      cwd: app,
      env,
      stdio: "ignore",
    },
  );
  t.teardown(() => stop(gateway));
  await waitFor(`http://127.0.0.1:${admin}/readyz`, gateway);
  t.equal((await fetch(`http://127.0.0.1:${proxy}/`)).ok, true, "the gateway proxies to its demo origin");
  t.equal(await stop(gateway), 0, "SIGTERM drains and exits 0");

  writeFileSync(
    join(app, "agent.yaml"),
    `agent: { admin: { listen: "127.0.0.1:${agentAdmin}" }, shutdownGrace: 1s }\ntelemetry: { logs: { level: error } }\n`,
  );
  const agentScript = npmScript("agent");
  const agent = spawn(process.execPath, [...agentScript.argv.slice(1), "--config", "agent.yaml"], {
    cwd: app,
    env: { ...process.env, ...agentScript.env },
    stdio: "ignore",
  });
  t.teardown(() => stop(agent));
  const health = await waitFor(`http://127.0.0.1:${agentAdmin}/healthz`, agent);
  t.equal(health.status, 200, "the agent answers /healthz");
  t.equal(await stop(agent), 0, "the agent stops on SIGTERM");
});
