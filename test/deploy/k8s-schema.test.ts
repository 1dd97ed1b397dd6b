import t from "tap";
import { apiClassFile, validateAgainstKubernetes } from "../../deploy/tools/k8s-schema.ts";

const service = {
  apiVersion: "v1",
  kind: "Service",
  metadata: { name: "s", labels: { a: "b" } },
  spec: { selector: { a: "b" }, ports: [{ name: "http", port: 80, targetPort: "http" }] },
};

t.test("apiVersion maps to the generated API class", async (t) => {
  t.equal(apiClassFile("v1"), "coreV1Api");
  t.equal(apiClassFile("apps/v1"), "appsV1Api");
  t.equal(apiClassFile("rbac.authorization.k8s.io/v1"), "rbacAuthorizationV1Api");
  t.equal(apiClassFile("flowcontrol.apiserver.k8s.io/v1beta3"), "flowcontrolApiserverV1beta3Api");
});

t.test("valid objects pass on 1.28 and 1.30; mistakes are named by path", async (t) => {
  const objects = [
    { source: "ok.yaml", doc: service },
    {
      source: "bad.yaml",
      doc: {
        apiVersion: "apps/v1",
        kind: "Deployment",
        metadata: { name: "d" },
        spec: {
          replicas: "3",
          selector: { matchLabels: { a: "b" } },
          template: { spec: { containers: [{ name: "c", image: "x", imagePullPolicyy: "Always" }] } },
        },
      },
    },
    {
      source: "missing.yaml",
      doc: { apiVersion: "apps/v1", kind: "Deployment", metadata: { name: "m" }, spec: {} },
    },
    {
      source: "old.yaml",
      doc: { apiVersion: "policy/v1beta1", kind: "PodDisruptionBudget", metadata: { name: "p" } },
    },
    {
      source: "crd.yaml",
      doc: { apiVersion: "monitoring.coreos.com/v1", kind: "ServiceMonitor", metadata: { name: "x" } },
    },
  ];
  for (const version of ["1.28", "1.30"] as const) {
    const report = validateAgainstKubernetes(objects, version);
    t.equal(report.checked, 3, `${version}: three built-in objects type-checked`);
    t.equal(report.skipped.length, 1, "the custom resource is skipped, not passed");
    const messages = report.issues.map((i) => `${i.source} ${i.object}: ${i.message}`);
    t.notOk(
      messages.some((m) => m.startsWith("ok.yaml")),
      "the valid Service passes",
    );
    t.ok(
      messages.some((m) =>
        /^bad\.yaml Deployment\/d: spec\.replicas: .*not assignable to type 'number'/.test(m),
      ),
      "wrong type",
    );
    t.ok(
      messages.some((m) =>
        /spec\.template\.spec\.containers\[0\]\.imagePullPolicyy: .*does not exist in type 'V1Container'/.test(
          m,
        ),
      ),
      "unknown field",
    );
    t.ok(
      messages.some((m) =>
        /^missing\.yaml Deployment\/m: spec: .*missing the following properties .*'selector', 'template'/.test(
          m,
        ),
      ),
      "missing required field",
    );
    t.ok(
      messages.some(
        (m) =>
          m ===
          `old.yaml PodDisruptionBudget/p: Kubernetes ${version} does not serve PodDisruptionBudget in policy/v1beta1`,
      ),
    );
  }
});

t.test("version differences show: flowcontrol v1beta2 is served by 1.28, not by 1.30", async (t) => {
  const fs = {
    source: "fs.yaml",
    doc: {
      apiVersion: "flowcontrol.apiserver.k8s.io/v1beta2",
      kind: "FlowSchema",
      metadata: { name: "f" },
      spec: { priorityLevelConfiguration: { name: "p" } },
    },
  };
  t.same(validateAgainstKubernetes([fs], "1.28").issues, []);
  t.match(validateAgainstKubernetes([fs], "1.30").issues[0]?.message, /does not serve FlowSchema/);
});
