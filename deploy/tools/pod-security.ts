/**
 * The Pod Security Standards "restricted" profile (kubernetes.io/docs/concepts/security/pod-security-standards,
 * as enforced by Pod Security Admission in 1.28+), as a pure check over one object's pod template.
 * Restricted includes every baseline control.
 */

export interface PodSecurityViolation {
  /** The PSS control's name, e.g. "Running as Non-root". */
  control: string;
  /** Where, e.g. "containers[gateway].securityContext.allowPrivilegeEscalation". */
  field: string;
  message: string;
}

type Obj = Record<string, unknown>;
const obj = (v: unknown): Obj => (v && typeof v === "object" && !Array.isArray(v) ? (v as Obj) : {});
const arr = (v: unknown): Obj[] => (Array.isArray(v) ? (v as Obj[]) : []);

const RESTRICTED_VOLUME_TYPES = new Set([
  "configMap",
  "csi",
  "downwardAPI",
  "emptyDir",
  "ephemeral",
  "persistentVolumeClaim",
  "projected",
  "secret",
]);
const SAFE_SYSCTLS = new Set([
  "kernel.shm_rmid_forced",
  "net.ipv4.ip_local_port_range",
  "net.ipv4.ip_unprivileged_port_start",
  "net.ipv4.tcp_syncookies",
  "net.ipv4.ping_group_range",
  "net.ipv4.ip_local_reserved_ports",
  "net.ipv4.tcp_keepalive_time",
  "net.ipv4.tcp_fin_timeout",
  "net.ipv4.tcp_keepalive_intvl",
  "net.ipv4.tcp_keepalive_probes",
]);
const SELINUX_TYPES = new Set([
  "",
  "container_t",
  "container_init_t",
  "container_kvm_t",
  "container_engine_t",
]);

/** The pod spec and annotations inside a workload, or undefined for kinds that have no pods. */
export function podTemplateOf(doc: Obj): { spec: Obj; annotations: Obj } | undefined {
  const kind = doc["kind"];
  const spec = obj(doc["spec"]);
  if (kind === "Pod") return { spec, annotations: obj(obj(doc["metadata"])["annotations"]) };
  let template: Obj | undefined;
  if (
    ["Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job", "ReplicationController"].includes(
      String(kind),
    )
  ) {
    template = obj(spec["template"]);
  } else if (kind === "CronJob") {
    template = obj(obj(obj(spec["jobTemplate"])["spec"])["template"]);
  }
  if (!template) return undefined;
  return { spec: obj(template["spec"]), annotations: obj(obj(template["metadata"])["annotations"]) };
}

/** Every restricted-profile violation in one object's pods; [] when it passes or has no pods. */
export function checkRestricted(doc: Obj): PodSecurityViolation[] {
  const pod = podTemplateOf(doc);
  if (!pod) return [];
  const { spec, annotations } = pod;
  const out: PodSecurityViolation[] = [];
  const add = (control: string, field: string, message: string) => out.push({ control, field, message });
  const podSc = obj(spec["securityContext"]);

  for (const ns of ["hostNetwork", "hostPID", "hostIPC"]) {
    if (spec[ns] === true) add("Host Namespaces", `spec.${ns}`, `${ns} must be unset or false`);
  }
  for (const v of arr(spec["volumes"])) {
    const types = Object.keys(v).filter((k) => k !== "name");
    for (const t of types) {
      if (t === "hostPath")
        add("HostPath Volumes", `volumes[${v["name"]}]`, "hostPath volumes are not allowed");
      else if (!RESTRICTED_VOLUME_TYPES.has(t)) {
        add("Volume Types", `volumes[${v["name"]}]`, `volume type ${t} is not allowed`);
      }
    }
  }
  for (const s of arr(podSc["sysctls"])) {
    if (!SAFE_SYSCTLS.has(String(s["name"])))
      add("Sysctls", "securityContext.sysctls", `unsafe sysctl ${s["name"]}`);
  }
  for (const [k, v] of Object.entries(annotations)) {
    if (k.startsWith("container.apparmor.security.beta.kubernetes.io/")) {
      const value = String(v);
      if (value !== "runtime/default" && !value.startsWith("localhost/")) {
        add("AppArmor", `annotations[${k}]`, `AppArmor profile ${value} is not allowed`);
      }
    }
  }
  const checkSeLinux = (sc: Obj, where: string) => {
    const se = obj(sc["seLinuxOptions"]);
    if (se["type"] !== undefined && !SELINUX_TYPES.has(String(se["type"]))) {
      add("SELinux", `${where}.seLinuxOptions.type`, `SELinux type ${se["type"]} is not allowed`);
    }
    if (se["user"] !== undefined || se["role"] !== undefined) {
      add("SELinux", `${where}.seLinuxOptions`, "SELinux user and role must be unset");
    }
  };
  checkSeLinux(podSc, "securityContext");
  if (obj(podSc["windowsOptions"])["hostProcess"] === true) {
    add("HostProcess", "securityContext.windowsOptions.hostProcess", "HostProcess pods are not allowed");
  }
  if (podSc["runAsUser"] === 0)
    add("Running as Non-root user", "securityContext.runAsUser", "runAsUser must not be 0");
  const podSeccomp = obj(podSc["seccompProfile"])["type"];
  if (podSeccomp !== undefined && podSeccomp !== "RuntimeDefault" && podSeccomp !== "Localhost") {
    add("Seccomp", "securityContext.seccompProfile.type", `seccomp ${String(podSeccomp)} is not allowed`);
  }

  const containers = [
    ...arr(spec["initContainers"]).map((c) => ["initContainers", c] as const),
    ...arr(spec["containers"]).map((c) => ["containers", c] as const),
    ...arr(spec["ephemeralContainers"]).map((c) => ["ephemeralContainers", c] as const),
  ];
  for (const [list, c] of containers) {
    const where = `${list}[${c["name"]}]`;
    const sc = obj(c["securityContext"]);
    const scWhere = `${where}.securityContext`;
    if (sc["privileged"] === true)
      add("Privileged Containers", `${scWhere}.privileged`, "privileged must be false");
    if (obj(sc["windowsOptions"])["hostProcess"] === true) {
      add("HostProcess", `${scWhere}.windowsOptions.hostProcess`, "HostProcess containers are not allowed");
    }
    for (const p of arr(c["ports"])) {
      if (p["hostPort"] !== undefined && p["hostPort"] !== 0) {
        add("Host Ports", `${where}.ports`, `hostPort ${p["hostPort"]} is not allowed`);
      }
    }
    if (sc["procMount"] !== undefined && sc["procMount"] !== "Default") {
      add("/proc Mount Type", `${scWhere}.procMount`, "procMount must be Default");
    }
    checkSeLinux(sc, scWhere);
    if (sc["allowPrivilegeEscalation"] !== false) {
      add(
        "Privilege Escalation",
        `${scWhere}.allowPrivilegeEscalation`,
        "allowPrivilegeEscalation must be false",
      );
    }
    const nonRoot = sc["runAsNonRoot"] ?? podSc["runAsNonRoot"];
    if (nonRoot !== true) {
      add("Running as Non-root", `${scWhere}.runAsNonRoot`, "runAsNonRoot must be true (pod or container)");
    }
    if (sc["runAsUser"] === 0)
      add("Running as Non-root user", `${scWhere}.runAsUser`, "runAsUser must not be 0");
    const seccomp = obj(sc["seccompProfile"])["type"] ?? podSeccomp;
    if (seccomp !== "RuntimeDefault" && seccomp !== "Localhost") {
      add("Seccomp", `${scWhere}.seccompProfile.type`, "seccompProfile must be RuntimeDefault or Localhost");
    }
    const caps = obj(sc["capabilities"]);
    const drop = arr(caps["drop"]).map(String);
    if (!drop.includes("ALL"))
      add("Capabilities", `${scWhere}.capabilities.drop`, "capabilities must drop ALL");
    for (const cap of arr(caps["add"]).map(String)) {
      if (cap !== "NET_BIND_SERVICE")
        add("Capabilities", `${scWhere}.capabilities.add`, `adding ${cap} is not allowed`);
    }
  }
  return out;
}
