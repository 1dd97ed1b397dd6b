import t from "tap";
import { checkRestricted, podTemplateOf } from "../../deploy/tools/pod-security.ts";

const compliantContainer = () => ({
  name: "app",
  image: "x",
  securityContext: {
    runAsNonRoot: true,
    allowPrivilegeEscalation: false,
    capabilities: { drop: ["ALL"] },
    seccompProfile: { type: "RuntimeDefault" },
  },
});
const deployment = (podSpec: Record<string, unknown>) => ({
  apiVersion: "apps/v1",
  kind: "Deployment",
  metadata: { name: "d" },
  spec: { template: { metadata: {}, spec: podSpec } },
});
const controls = (doc: Record<string, unknown>) => checkRestricted(doc).map((v) => v.control);

t.test("a compliant pod template passes", async (t) => {
  t.same(
    checkRestricted(
      deployment({ containers: [compliantContainer()], volumes: [{ name: "c", configMap: { name: "c" } }] }),
    ),
    [],
  );
  // Pod-level runAsNonRoot and seccomp count for every container.
  const c = compliantContainer();
  delete (c.securityContext as Record<string, unknown>)["runAsNonRoot"];
  delete (c.securityContext as Record<string, unknown>)["seccompProfile"];
  t.same(
    checkRestricted(
      deployment({
        securityContext: { runAsNonRoot: true, seccompProfile: { type: "RuntimeDefault" } },
        containers: [c],
      }),
    ),
    [],
  );
});

t.test("each restricted control is enforced", async (t) => {
  const base = compliantContainer();
  const with_ = (sc: Record<string, unknown>, extra: Record<string, unknown> = {}) =>
    deployment({ containers: [{ ...base, securityContext: { ...base.securityContext, ...sc } }], ...extra });
  t.same(controls(with_({ allowPrivilegeEscalation: true })), ["Privilege Escalation"]);
  t.same(controls(with_({ runAsNonRoot: false })), ["Running as Non-root"]);
  t.same(controls(with_({ runAsUser: 0 })), ["Running as Non-root user"]);
  t.same(controls(with_({ seccompProfile: { type: "Unconfined" } })), ["Seccomp"]);
  t.same(controls(with_({ capabilities: { drop: ["NET_RAW"] } })), ["Capabilities"]);
  t.same(controls(with_({ capabilities: { drop: ["ALL"], add: ["NET_ADMIN"] } })), ["Capabilities"]);
  t.same(controls(with_({ capabilities: { drop: ["ALL"], add: ["NET_BIND_SERVICE"] } })), []);
  t.same(controls(with_({ privileged: true })), ["Privileged Containers"]);
  t.same(controls(with_({ procMount: "Unmasked" })), ["/proc Mount Type"]);
  t.same(controls(with_({ seLinuxOptions: { type: "spc_t" } })), ["SELinux"]);
  t.same(controls(with_({}, { hostNetwork: true })), ["Host Namespaces"]);
  t.same(controls(with_({}, { volumes: [{ name: "h", hostPath: { path: "/proc" } }] })), [
    "HostPath Volumes",
  ]);
  t.same(controls(with_({}, { volumes: [{ name: "n", nfs: { server: "s", path: "/" } }] })), [
    "Volume Types",
  ]);
  t.same(controls(with_({}, { securityContext: { sysctls: [{ name: "kernel.msgmax", value: "1" }] } })), [
    "Sysctls",
  ]);
  const hostPort = deployment({ containers: [{ ...base, ports: [{ containerPort: 80, hostPort: 80 }] }] });
  t.same(controls(hostPort), ["Host Ports"]);
  const init = deployment({ containers: [base], initContainers: [{ name: "init", image: "x" }] });
  t.ok(controls(init).includes("Privilege Escalation"), "init containers are checked too");
});

t.test("podTemplateOf knows where each workload keeps its pods", async (t) => {
  t.ok(podTemplateOf({ kind: "Pod", spec: { containers: [] } }));
  t.ok(podTemplateOf({ kind: "CronJob", spec: { jobTemplate: { spec: { template: { spec: {} } } } } }));
  t.equal(podTemplateOf({ kind: "Service", spec: {} }), undefined);
  t.same(checkRestricted({ kind: "ConfigMap" }), []);
});
