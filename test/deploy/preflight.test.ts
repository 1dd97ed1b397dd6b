import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import t from "tap";
import { API_CHANGES, apiVerdict, parseKubeVersion } from "../../deploy/preflight/apis.ts";
import { assess, objectsInText, scanPaths } from "../../deploy/preflight/scan.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const FIXTURES_124 = fileURLToPath(new URL("./fixtures/k8s-1.24", import.meta.url));
const FIXTURES_128 = fileURLToPath(new URL("./fixtures/k8s-1.28", import.meta.url));
const v = parseKubeVersion;

t.test("apiVerdict follows the published removal list", async (t) => {
  const removedBy128: [string, string][] = [
    ["policy/v1beta1", "PodSecurityPolicy"],
    ["policy/v1beta1", "PodDisruptionBudget"],
    ["autoscaling/v2beta1", "HorizontalPodAutoscaler"],
    ["autoscaling/v2beta2", "HorizontalPodAutoscaler"],
    ["batch/v1beta1", "CronJob"],
    ["flowcontrol.apiserver.k8s.io/v1beta1", "FlowSchema"],
    ["discovery.k8s.io/v1beta1", "EndpointSlice"],
    ["events.k8s.io/v1beta1", "Event"],
    ["node.k8s.io/v1beta1", "RuntimeClass"],
    ["storage.k8s.io/v1beta1", "CSIStorageCapacity"],
    ["extensions/v1beta1", "Ingress"],
    ["networking.k8s.io/v1beta1", "Ingress"],
    ["rbac.authorization.k8s.io/v1beta1", "ClusterRole"],
    ["apiextensions.k8s.io/v1beta1", "CustomResourceDefinition"],
  ];
  for (const [api, kind] of removedBy128) {
    t.equal(apiVerdict(api, kind, v("1.28")).status, "removed", `${api} ${kind} removed by 1.28`);
  }
  // flowcontrol v1beta2: deprecated at 1.28, removed at 1.29.
  t.equal(apiVerdict("flowcontrol.apiserver.k8s.io/v1beta2", "FlowSchema", v("1.28")).status, "deprecated");
  t.equal(apiVerdict("flowcontrol.apiserver.k8s.io/v1beta2", "FlowSchema", v("1.29")).status, "removed");
  // Still fine on 1.24 for the 1.25 removals (deprecated only).
  t.equal(apiVerdict("batch/v1beta1", "CronJob", v("1.24")).status, "deprecated");
  t.equal(apiVerdict("batch/v1beta1", "CronJob", v("1.20")).status, "ok");
  // Current APIs and custom resources pass.
  for (const [api, kind] of [
    ["apps/v1", "Deployment"],
    ["policy/v1", "PodDisruptionBudget"],
    ["autoscaling/v2", "HorizontalPodAutoscaler"],
    ["batch/v1", "CronJob"],
    ["monitoring.coreos.com/v1", "ServiceMonitor"],
  ] as const) {
    t.equal(apiVerdict(api, kind, v("1.30")).status, "ok", `${api} ${kind} ok`);
  }
  // Every entry is internally consistent: deprecated before removed, a replacement named.
  for (const c of API_CHANGES) {
    if (c.removedIn) t.ok(v(c.deprecatedIn)[1] < v(c.removedIn)[1], `${c.apiVersion} ${c.kind} order`);
    t.ok(c.replacement.length > 0);
  }
});

t.test("parseKubeVersion accepts 1.28, v1.28.3 and rejects junk", async (t) => {
  t.same(v("1.28"), [1, 28]);
  t.same(v("v1.30.2"), [1, 30]);
  t.throws(() => v("latest"), /Kubernetes version/);
});

t.test("objectsInText reads multi-doc YAML, Lists and unrendered templates", async (t) => {
  const objs = objectsInText(
    "apiVersion: v1\nkind: List\nitems:\n- apiVersion: batch/v1beta1\n  kind: CronJob\n  metadata: {name: a, namespace: n}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: s}\n",
    "x.yaml",
  );
  t.same(
    objs.map((o) => [o.apiVersion, o.kind, o.name, o.namespace]),
    [
      ["batch/v1beta1", "CronJob", "a", "n"],
      ["v1", "Service", "s", undefined],
    ],
  );
  const tpl = objectsInText(
    "{{- if .Values.x }}\napiVersion: policy/v1beta1\nkind: PodDisruptionBudget\nmetadata:\n  name: {{ .Release.Name }}\n{{- end }}\n",
    "t.yaml",
  );
  t.equal(tpl[0]?.via, "line-scan");
  t.equal(assess(tpl, v("1.28"))[0]?.severity, "removed");
});

t.test("the 1.24-era fixtures break on 1.28, the 1.28 ones do not", async (t) => {
  const { findings } = scanPaths([FIXTURES_124], v("1.28"));
  const removed = findings
    .filter((f) => f.severity === "removed")
    .map((f) => `${f.object.apiVersion} ${f.object.kind}`);
  t.same(removed.sort(), [
    "autoscaling/v2beta1 HorizontalPodAutoscaler",
    "autoscaling/v2beta2 HorizontalPodAutoscaler",
    "batch/v1beta1 CronJob",
    "discovery.k8s.io/v1beta1 EndpointSlice",
    "flowcontrol.apiserver.k8s.io/v1beta1 PriorityLevelConfiguration",
    "node.k8s.io/v1beta1 RuntimeClass",
    "policy/v1beta1 PodDisruptionBudget",
    "policy/v1beta1 PodSecurityPolicy",
    "storage.k8s.io/v1beta1 CSIStorageCapacity",
  ]);
  // On 1.24 itself nothing is removed yet: the same files only warn.
  t.equal(scanPaths([FIXTURES_124], v("1.24")).findings.filter((f) => f.severity === "removed").length, 0);
  t.equal(scanPaths([FIXTURES_128], v("1.28")).findings.length, 0);
});

function cli(args: string[]) {
  return spawnSync(process.execPath, ["bin/edgeway.js", "deploy", "preflight", ...args], {
    cwd: ROOT,
    encoding: "utf8",
  });
}

t.test("edgeway deploy preflight exits non-zero when something would break", async (t) => {
  const bad = cli(["--target", "1.28", FIXTURES_124]);
  t.equal(bad.status, 1, bad.stderr);
  t.match(
    bad.stdout,
    /REMOVED\s+\S*workloads\.yaml\s+CronJob\/nightly-report\s+batch\/v1beta1\s+batch\/v1\s+1\.21\s+1\.25/,
  );
  t.match(bad.stdout, /PodSecurityPolicy\/restricted/);
  const good = cli(["--target", "1.28", FIXTURES_128]);
  t.equal(good.status, 0, good.stdout + good.stderr);
  const strict = cli(["--target", "1.29", "--fail-on-deprecated", FIXTURES_128]);
  t.equal(strict.status, 1, "v1beta3 FlowSchema is deprecated at 1.29");
  const json = cli(["--target", "1.28", "-o", "json", `${FIXTURES_124}/psp.yaml`]);
  t.equal(json.status, 1);
  t.equal(JSON.parse(json.stdout).findings[0].replacement, "none: Pod Security Admission");
  t.equal(cli([FIXTURES_124]).status, 2, "--target is required");
  t.equal(cli(["--target", "1.28", "/nonexistent/dir"]).status, 2);
});
