/**
 * `npm run check:deploy`: everything in deploy/ that CI can check without a cluster, helm or Docker.
 *
 *   1. values.yaml and the example value files against values.schema.json (ajv, as helm does);
 *   2. the chart rendered for each of them by the narrow renderer (deploy/tools/helm-render.ts);
 *   3. every rendered object against the Kubernetes 1.28 and 1.30 OpenAPI schemas;
 *   4. no API removed or deprecated up to 1.30 (the preflight's table);
 *   5. the Pod Security Standards "restricted" profile, with the agent's read-only hostPath as the one
 *      named exception;
 *   6. the chart's own promises (maxUnavailable 0, probes, grace period ≥ preStop + drain, checksum,
 *      zone spread, read-only host mounts, no inlined secrets) and the rendered configs accepted by the
 *      programs' own config validation;
 *   7. promtool check rules and promtool test rules;
 *   8. the Grafana dashboards: the JSON matches its source, every query parses (promtool), and every
 *      metric a query or rule names exists in the programs' /metrics or code.
 *
 * Exits 0 when all pass; otherwise lists each failure and exits 1. `--no-scrape` skips starting the
 * gateway and agent for the metric cross-check (the code scan still runs).
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Ajv } from "ajv";
import { parseAllDocuments, parse as parseYaml, stringify as stringifyYaml } from "yaml";
import { parseAgentConfig } from "../../agent/config.ts";
import { AGENT_MODULES } from "../../agent/modules.ts";
import { parseGatewayConfig } from "../../gateway/core/config.ts";
import { parseKubeVersion } from "../preflight/apis.ts";
import { assess, type ManifestObject } from "../preflight/scan.ts";
import { DASHBOARDS, dashboardText, GRAFANA_DIR } from "./grafana-dashboards.ts";
import { loadValues, renderChart } from "./helm-render.ts";
import { type KubeObject, validateAgainstKubernetes } from "./k8s-schema.ts";
import {
  buildCatalog,
  type MetricCatalog,
  metricExists,
  metricNamesInQuery,
  ROOT,
} from "./metrics-catalog.ts";
import { checkRestricted } from "./pod-security.ts";

export const CHART_DIR = join(ROOT, "deploy/helm/edgeway");
export const PROMETHEUS_DIR = join(ROOT, "deploy/prometheus");
/** The value sets CI renders: the defaults, then each example over them. */
export const VALUE_SETS: { name: string; files: string[] }[] = [
  { name: "defaults", files: [] },
  { name: "examples/production.yaml", files: [join(CHART_DIR, "examples/production.yaml")] },
  { name: "examples/gateway-only.yaml", files: [join(CHART_DIR, "examples/gateway-only.yaml")] },
];

export interface CheckResult {
  name: string;
  failures: string[];
  notes: string[];
}

type Obj = Record<string, unknown>;
const o = (v: unknown): Obj => (v && typeof v === "object" && !Array.isArray(v) ? (v as Obj) : {});
const a = (v: unknown): Obj[] => (Array.isArray(v) ? (v as Obj[]) : []);

export function validateValues(files: string[][] = VALUE_SETS.map((s) => s.files)): string[] {
  const ajv = new Ajv({ allErrors: true, strict: false });
  const validate = ajv.compile(JSON.parse(readFileSync(join(CHART_DIR, "values.schema.json"), "utf8")));
  const failures: string[] = [];
  for (const set of files) {
    const values = loadValues(CHART_DIR, set);
    if (!validate(values)) {
      for (const e of validate.errors ?? []) {
        failures.push(`${set.join(", ") || "values.yaml"}: ${e.instancePath || "/"} ${e.message}`);
      }
    }
  }
  return failures;
}

export interface RenderedSet {
  name: string;
  objects: KubeObject[];
}

export function renderSets(): RenderedSet[] {
  return VALUE_SETS.map((set) => {
    const objects: KubeObject[] = [];
    for (const r of renderChart(CHART_DIR, {
      releaseName: "edgeway",
      namespace: "edge",
      valueFiles: set.files,
    })) {
      for (const doc of parseAllDocuments(r.text)) {
        if (doc.errors.length > 0) throw new Error(`${set.name} ${r.source}: ${doc.errors[0]!.message}`);
        const value = doc.toJS();
        if (value) objects.push({ source: `${set.name}: ${r.source}`, doc: value });
      }
    }
    return { name: set.name, objects };
  });
}

/** The chart's own promises, checked on one rendered value set. */
export function chartInvariants(set: RenderedSet): string[] {
  const f: string[] = [];
  const find = (kind: string, suffix: string) =>
    set.objects.find((x) => x.doc["kind"] === kind && String(o(x.doc["metadata"])["name"]).endsWith(suffix));
  if (set.objects.some((x) => x.doc["kind"] === "Secret"))
    f.push("the chart must not render Secrets (secrets are referenced)");
  const dep = find("Deployment", "-gateway");
  const cm = find("ConfigMap", "-gateway");
  if (dep && cm) {
    const spec = o(dep.doc["spec"]);
    const strategy = o(spec["strategy"]);
    if (strategy["type"] !== "RollingUpdate" || o(strategy["rollingUpdate"])["maxUnavailable"] !== 0) {
      f.push("gateway Deployment: RollingUpdate with maxUnavailable 0");
    }
    const pod = o(o(spec["template"])["spec"]);
    const c = a(pod["containers"])[0] ?? {};
    if (o(o(c["readinessProbe"])["httpGet"])["path"] !== "/readyz")
      f.push("gateway readinessProbe on /readyz");
    if (o(o(c["livenessProbe"])["httpGet"])["path"] !== "/healthz")
      f.push("gateway livenessProbe on /healthz");
    const sleep = Number(a(o(o(o(c["lifecycle"])["preStop"])["exec"])["command"])[1] ?? Number.NaN);
    const config = parseYaml(String(o(cm.doc["data"])["gateway.yaml"])) as Obj;
    const drain = /^(\d+)s$/.exec(String(o(config["server"])["drainTimeout"]))?.[1];
    const grace = Number(pod["terminationGracePeriodSeconds"]);
    if (!(sleep >= 0) || drain === undefined || !(grace >= sleep + Number(drain))) {
      f.push(`gateway terminationGracePeriodSeconds ${grace} must cover preStop ${sleep}s + drain ${drain}s`);
    }
    const spread = a(pod["topologySpreadConstraints"]).map((t) => t["topologyKey"]);
    if (!spread.includes("topology.kubernetes.io/zone")) f.push("gateway pods spread across zones");
    const checksum = o(o(o(spec["template"])["metadata"])["annotations"])["checksum/config"];
    if (!/^[0-9a-f]{64}$/.test(String(checksum))) f.push("gateway pod template carries checksum/config");
    for (const e of a(c["env"])) {
      if (/URL|KEY|SECRET|PASSWORD|TOKEN/.test(String(e["name"])) && e["value"] !== undefined) {
        f.push(`gateway env ${e["name"]} has an inline value; use secretKeyRef`);
      }
    }
    if (!c["resources"] || !o(c["resources"])["requests"]) f.push("gateway container has resource requests");
  }
  const ds = find("DaemonSet", "-agent");
  if (ds) {
    const pod = o(o(o(ds.doc["spec"])["template"])["spec"]);
    const c = a(pod["containers"])[0] ?? {};
    const hostVolumes = new Set(
      a(pod["volumes"])
        .filter((v) => v["hostPath"])
        .map((v) => v["name"]),
    );
    for (const m of a(c["volumeMounts"])) {
      if (hostVolumes.has(m["name"]) && m["readOnly"] !== true)
        f.push(`agent mounts hostPath ${m["name"]} writable`);
    }
    for (const v of a(pod["volumes"])) {
      const path = o(v["hostPath"])["path"];
      if (path !== undefined && path !== "/proc" && path !== "/sys")
        f.push(`agent hostPath ${path} (only /proc, /sys)`);
    }
  }
  return f;
}

/** Runs the programs' own config validation (in process) on the rendered ConfigMaps. */
export async function renderedConfigsAccepted(set: RenderedSet): Promise<string[]> {
  const f: string[] = [];
  // The values the pods get from their Secrets and the downward API, so ${VAR} references expand.
  const env: Record<string, string> = {
    EDGEWAY_REDIS_URL: "redis://127.0.0.1:6379",
    EDGEWAY_JWKS_URL: "https://auth.example.com/.well-known/jwks.json",
    NODE_NAME: "node-1",
  };
  const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
  Object.assign(process.env, env);
  try {
    for (const x of set.objects) {
      if (x.doc["kind"] !== "ConfigMap") continue;
      const data = o(x.doc["data"]);
      if (typeof data["gateway.yaml"] === "string") {
        try {
          // The TLS files are in the pod's Secret, not here: the schema is checked, not the files.
          await parseGatewayConfig(data["gateway.yaml"], "gateway.yaml", { files: false });
        } catch (err) {
          f.push(`${x.source}: the gateway rejects gateway.yaml: ${(err as Error).message}`);
        }
      }
      if (typeof data["agent.yaml"] === "string") {
        try {
          parseAgentConfig(data["agent.yaml"], AGENT_MODULES, "agent.yaml");
        } catch (err) {
          f.push(`${x.source}: the agent rejects agent.yaml: ${(err as Error).message}`);
        }
      }
    }
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
  return f;
}

/** promtool from PATH, installed by .ci/deploy-deps.sh when missing (Debian's prometheus package). */
export function promtool(): string {
  const found = () => spawnSync("sh", ["-c", "command -v promtool"], { encoding: "utf8" }).stdout.trim();
  let path = found();
  if (!path) {
    spawnSync("bash", [join(ROOT, ".ci/deploy-deps.sh")], { stdio: "inherit" });
    path = found();
  }
  if (!path) throw new Error("promtool is missing and .ci/deploy-deps.sh could not install it");
  return path;
}

/** promtool check and test on a rules directory (rules.yaml, tests/*.test.yaml); deploy/prometheus by default. */
export function checkRules(dir = PROMETHEUS_DIR): string[] {
  const f: string[] = [];
  const bin = promtool();
  const rules = readFileSync(join(dir, "rules.yaml"), "utf8");
  if (readFileSync(join(CHART_DIR, "files/prometheus-rules.yaml"), "utf8") !== rules) {
    f.push(
      "deploy/helm/edgeway/files/prometheus-rules.yaml differs from deploy/prometheus/rules.yaml (copy it)",
    );
  }
  const testFiles = readdirSync(join(dir, "tests"))
    .filter((name) => name.endsWith(".test.yaml"))
    .sort()
    .map((name) => `tests/${name}`);
  // Every alert has at least one promtool unit test.
  const tested = new Set<string>();
  for (const file of testFiles) {
    const doc = parseYaml(readFileSync(join(dir, file), "utf8")) as Obj;
    for (const test of a(doc["tests"]))
      for (const at of a(test["alert_rule_test"])) tested.add(String(at["alertname"]));
  }
  const alerts = a((parseYaml(rules) as Obj)["groups"]).flatMap((g) =>
    a(g["rules"]).flatMap((r) => (r["alert"] ? [String(r["alert"])] : [])),
  );
  for (const alert of alerts) {
    if (!tested.has(alert)) f.push(`alert ${alert} has no promtool test in deploy/prometheus/tests/`);
  }
  for (const args of [
    ["check", "rules", "rules.yaml"],
    ["test", "rules", ...testFiles],
  ]) {
    const run = spawnSync(bin, args, { cwd: dir, encoding: "utf8" });
    if (run.status !== 0) f.push(`promtool ${args.join(" ")}:\n${(run.stdout + run.stderr).trim()}`);
  }
  return f;
}

/** Every PromQL expression of the rules and dashboards, with where it comes from. */
export function allQueries(): { where: string; expr: string }[] {
  const out: { where: string; expr: string }[] = [];
  const rules = parseYaml(readFileSync(join(PROMETHEUS_DIR, "rules.yaml"), "utf8")) as Obj;
  for (const g of a(rules["groups"])) {
    for (const r of a(g["rules"]))
      out.push({ where: `rules.yaml ${r["alert"] ?? r["record"]}`, expr: String(r["expr"]) });
  }
  for (const spec of DASHBOARDS) {
    const json = JSON.parse(readFileSync(join(GRAFANA_DIR, spec.file), "utf8")) as Obj;
    for (const p of a(json["panels"])) {
      for (const t of a(p["targets"]))
        out.push({ where: `grafana/${spec.file} "${p["title"]}"`, expr: String(t["expr"]) });
    }
  }
  return out;
}

export function checkDashboards(catalog: MetricCatalog): string[] {
  const f: string[] = [];
  for (const spec of DASHBOARDS) {
    const file = join(GRAFANA_DIR, spec.file);
    if (!existsSync(file) || readFileSync(file, "utf8") !== dashboardText(spec)) {
      f.push(`deploy/grafana/${spec.file} is not what deploy/tools/grafana-dashboards.ts generates (run it)`);
    }
  }
  const queries = allQueries();
  // Let promtool parse every dashboard query, as recording rules with Grafana's variables filled in.
  const dir = mkdtempSync(join(tmpdir(), "edgeway-dash-"));
  try {
    const rules = queries
      .filter((q) => q.where.startsWith("grafana/"))
      .map((q, k) => ({
        record: `dashboard_query_${k}`,
        expr: q.expr.replaceAll("$__rate_interval", "5m").replaceAll("$__range", "1h"),
      }));
    writeFileSync(join(dir, "dash.yaml"), stringifyYaml({ groups: [{ name: "dashboards", rules }] }));
    const run = spawnSync(promtool(), ["check", "rules", join(dir, "dash.yaml")], { encoding: "utf8" });
    if (run.status !== 0) f.push(`a dashboard query does not parse:\n${(run.stdout + run.stderr).trim()}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const recorded = new Set(
    queries.filter((q) => q.where.startsWith("rules.yaml")).map((q) => q.where.split(" ")[1]!),
  );
  const missing = new Map<string, string[]>();
  for (const q of queries) {
    for (const name of metricNamesInQuery(q.expr)) {
      if (name.includes(":") ? recorded.has(name) : metricExists(name, catalog)) continue;
      if (!missing.has(name)) missing.set(name, []);
      missing.get(name)!.push(q.where);
    }
  }
  for (const [name, where] of [...missing].sort()) {
    f.push(
      `metric ${name} is in no /metrics output nor registered in code; used by ${[...new Set(where)].join("; ")}`,
    );
  }
  return f;
}

export async function runChecks(opts: { scrape?: boolean } = {}): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  const step = async (name: string, fn: () => string[] | Promise<string[]>, notes: string[] = []) => {
    try {
      results.push({ name, failures: await fn(), notes });
    } catch (err) {
      results.push({ name, failures: [(err as Error).message], notes });
    }
  };
  await step("values.yaml and examples match values.schema.json", () => validateValues());
  let sets: RenderedSet[] = [];
  await step("chart renders for defaults and each example", () => {
    sets = renderSets();
    return [];
  });
  const all = sets.flatMap((s) => s.objects);
  for (const version of ["1.28", "1.30"] as const) {
    const notes: string[] = [];
    await step(
      `rendered objects valid against Kubernetes ${version} schemas`,
      () => {
        const report = validateAgainstKubernetes(all, version);
        notes.push(`${report.checked} objects checked, ${report.skipped.length} custom resources skipped`);
        return report.issues.map((i) => `${i.source} ${i.object}: ${i.message}`);
      },
      notes,
    );
  }
  await step("no API removed or deprecated up to Kubernetes 1.30", () => {
    const objects: ManifestObject[] = all.map((x) => ({
      file: x.source,
      apiVersion: String(x.doc["apiVersion"]),
      kind: String(x.doc["kind"]),
      name: String(o(x.doc["metadata"])["name"]),
      via: "yaml",
    }));
    return assess(objects, parseKubeVersion("1.30")).map(
      (f) =>
        `${f.object.file} ${f.object.kind}/${f.object.name}: ${f.object.apiVersion} ${f.severity}, use ${f.change.replacement}`,
    );
  });
  const pssNotes: string[] = [];
  await step(
    "Pod Security Standards: restricted",
    () =>
      all.flatMap((x) =>
        checkRestricted(x.doc).flatMap((v) => {
          const agent =
            x.doc["kind"] === "DaemonSet" && String(o(x.doc["metadata"])["name"]).endsWith("-agent");
          if (agent && v.control === "HostPath Volumes") {
            pssNotes.push(`exception: ${x.source} ${v.field} (read-only /proc or /sys for host metrics)`);
            return [];
          }
          return [`${x.source} ${x.doc["kind"]}: [${v.control}] ${v.field}: ${v.message}`];
        }),
      ),
    pssNotes,
  );
  await step("chart invariants", () => sets.flatMap((s) => chartInvariants(s).map((m) => `${s.name}: ${m}`)));
  await step("rendered configs accepted by edgeway", async () =>
    (await Promise.all(sets.map(renderedConfigsAccepted))).flat(),
  );
  await step("promtool check rules / test rules", checkRules);
  const catalogNotes: string[] = [];
  await step(
    "dashboards and rules name existing metrics",
    async () => {
      const catalog = await buildCatalog({ scrape: opts.scrape });
      catalogNotes.push(...catalog.notes, `${catalog.names.size} metric names known`);
      return checkDashboards(catalog);
    },
    catalogNotes,
  );
  return results;
}

if (import.meta.main) {
  const results = await runChecks({ scrape: !process.argv.includes("--no-scrape") });
  let failed = 0;
  for (const r of results) {
    const ok = r.failures.length === 0;
    if (!ok) failed++;
    process.stdout.write(`${ok ? "ok  " : "FAIL"} ${r.name}\n`);
    for (const n of r.notes) process.stdout.write(`       ${n}\n`);
    for (const f of r.failures) process.stdout.write(`       - ${f.replaceAll("\n", "\n         ")}\n`);
  }
  process.stdout.write(`check:deploy: ${results.length - failed} passed, ${failed} failed\n`);
  process.exitCode = failed === 0 ? 0 : 1;
}
