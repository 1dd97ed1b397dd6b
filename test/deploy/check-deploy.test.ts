import { spawnSync } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import t from "tap";
import { parse as parseYaml } from "yaml";
import {
  chartInvariants,
  checkDashboards,
  checkRules,
  renderedConfigsAccepted,
  renderSets,
  validateValues,
} from "../../deploy/tools/check.ts";
import {
  type MetricCatalog,
  metricExists,
  metricNamesInQuery,
  parseExposition,
} from "../../deploy/tools/metrics-catalog.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

t.test(
  "npm run check:deploy passes on the repository (render, schemas, PSS, promtool, metrics)",
  async (t) => {
    const run = spawnSync(process.execPath, ["deploy/tools/check.ts"], {
      cwd: ROOT,
      encoding: "utf8",
      timeout: 170_000,
    });
    t.equal(run.status, 0, run.stdout + run.stderr);
    t.match(run.stdout, /check:deploy: 10 passed, 0 failed/);
    t.match(run.stdout, /ok {3}rendered objects valid against Kubernetes 1\.28 schemas/);
    t.match(run.stdout, /ok {3}rendered objects valid against Kubernetes 1\.30 schemas/);
    t.match(
      run.stdout,
      /exception: .*agent-daemonset\.yaml volumes\[host-proc\]/,
      "the hostPath exception is printed",
    );
    t.notMatch(
      run.stdout,
      /could not scrape/,
      "the gateway (plain and with features) and the agent were scraped",
    );
  },
);

t.test("values.schema.json rejects what the chart cannot honour", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "edgeway-values-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const bad = join(dir, "bad.yaml");
  writeFileSync(
    bad,
    [
      "securityContext: { runAsUser: 0 }",
      "gateway:",
      "  replicas: two",
      "  config: { server: { listen: { port: 1 } } }",
      "  resources: { requests: { cpu: 1 } }",
      "secrets: { redisUrl: { name: Not_A_Name, key: url } }",
      "typo: true",
      "",
    ].join("\n"),
  );
  const failures = validateValues([[bad]]).join("\n");
  t.match(failures, /\/securityContext\/runAsUser must be >= 1/);
  t.match(failures, /\/gateway\/replicas must be integer/);
  t.match(
    failures,
    /\/gateway\/config must NOT be valid/,
    "server is set by the chart, not by gateway.config",
  );
  t.match(failures, /\/gateway\/resources\/requests\/cpu must be string/);
  t.match(failures, /\/secrets\/redisUrl\/name must match pattern/);
  t.match(failures, /must NOT have additional properties/);
  t.same(validateValues(), [], "the shipped values and examples pass");
});

t.test("chart invariants catch a Deployment that could drop capacity", async (t) => {
  const [defaults] = renderSets();
  t.same(chartInvariants(defaults!), []);
  const broken = structuredClone(defaults!);
  const dep = broken.objects.find((o) => o.doc["kind"] === "Deployment")!;
  (
    dep.doc as { spec: { strategy: { rollingUpdate: { maxUnavailable: number } } } }
  ).spec.strategy.rollingUpdate.maxUnavailable = 1;
  t.match(chartInvariants(broken).join("\n"), /maxUnavailable 0/);
});

t.test("rendered configs go through the programs' own validation", async (t) => {
  const [defaults] = renderSets();
  t.same(await renderedConfigsAccepted(defaults!), []);
  const broken = structuredClone(defaults!);
  for (const x of broken.objects) {
    const data = x.doc["data"] as Record<string, string> | undefined;
    if (data?.["gateway.yaml"]) data["gateway.yaml"] += "routez: []\n";
    if (data?.["agent.yaml"])
      data["agent.yaml"] = data["agent.yaml"].replace("shutdownGrace:", "shutdownGrase:");
  }
  const failures = (await renderedConfigsAccepted(broken)).join("\n");
  t.match(failures, /the gateway rejects gateway\.yaml/);
  t.match(failures, /the agent rejects agent\.yaml: [\s\S]*unknown key "shutdownGrase"/);
});

t.test("a query naming a metric nobody exports fails, listing the name", async (t) => {
  const empty: MetricCatalog = { names: new Map(), histograms: new Set(), notes: [] };
  const failures = checkDashboards(empty).join("\n");
  t.match(
    failures,
    /metric edgeway_http_requests_total is in no \/metrics output nor registered in code; used by .*gateway\.json/,
  );
  t.notMatch(failures, /metric edgeway:http_error_ratio/, "recorded names come from the rules");
});

t.test("metric name helpers", async (t) => {
  t.same(metricNamesInQuery('sum(rate(edgeway_a_total{x="y"}[5m])) / edgeway:b:rate5m > 1'), [
    "edgeway_a_total",
    "edgeway:b:rate5m",
  ]);
  const parsed = parseExposition(
    '# HELP edgeway_d_seconds d\n# TYPE edgeway_d_seconds histogram\nedgeway_d_seconds_bucket{le="1"} 1\nedgeway_up 1\n',
  );
  t.ok(parsed.histograms.has("edgeway_d_seconds"));
  const catalog: MetricCatalog = {
    names: new Map([...parsed.names].map((n) => [n, new Set(["code" as const])])),
    histograms: parsed.histograms,
    notes: [],
  };
  t.ok(metricExists("edgeway_d_seconds_bucket", catalog));
  t.ok(metricExists("edgeway_d_seconds_count", catalog));
  t.ok(metricExists("edgeway_up", catalog));
  t.notOk(metricExists("edgeway_down", catalog));
});

t.test("values.schema.json: the gateway config needs services and routes", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "edgeway-values-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, "v.yaml");
  writeFileSync(file, "gateway:\n  config:\n    services: null\n    routes: null\n");
  t.match(validateValues([[file]]).join("\n"), /\/gateway\/config must have required property 'services'/);
});

t.test("an alert without a promtool test fails the check", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "edgeway-rules-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  cpSync(join(ROOT, "deploy/prometheus"), dir, { recursive: true });
  const rules = readFileSync(join(dir, "rules.yaml"), "utf8");
  writeFileSync(
    join(dir, "rules.yaml"),
    `${rules}      - alert: EdgewayUntested\n        expr: vector(1) > 2\n        labels:\n          severity: warning\n`,
  );
  const failures = checkRules(dir).join("\n");
  t.match(failures, /alert EdgewayUntested has no promtool test/);
  t.same(checkRules(), [], "the shipped rules are all tested and pass");
});

t.test(
  "the production example keeps none of the chart's demo: no demo service, no demo origin",
  async (t) => {
    const production = renderSets().find((s) => s.name === "examples/production.yaml");
    const configMap = production?.objects.find(
      (x) => (x.doc["data"] as Record<string, string>)?.["gateway.yaml"],
    );
    const config = parseYaml((configMap!.doc["data"] as Record<string, string>)["gateway.yaml"]!);
    t.same(Object.keys(config.services), ["api"], "null in the values deletes the chart's default service");
    t.equal(config.demoOrigin.enabled, false);
    t.notOk(
      config.routes.some((r: { service: string }) => r.service === "demo"),
      "and no route points at it",
    );
  },
);
