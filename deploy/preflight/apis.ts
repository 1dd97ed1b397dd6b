/**
 * Kubernetes API versions that were deprecated and removed, from the published deprecation guide
 * (kubernetes.io/docs/reference/using-api/deprecation-guide). Pure data plus pure lookups:
 * the preflight CLI and the chart check both use them.
 */

/** A Kubernetes minor version as [major, minor], e.g. [1, 28]. */
export type KubeVersion = readonly [number, number];

export interface ApiChange {
  /** "group/version", or "v1" for the core group. */
  apiVersion: string;
  kind: string;
  /** The version from which the API server warns (first minor that deprecated it). */
  deprecatedIn: string;
  /** The first minor that no longer serves it; undefined while it is only deprecated. */
  removedIn?: string;
  /** What to use instead, as apiVersion (or a sentence when nothing replaces it). */
  replacement: string;
  note?: string;
}

const PSP_NOTE =
  "PodSecurityPolicy is gone: label namespaces for Pod Security Admission (pod-security.kubernetes.io/enforce)";

function each(
  apiVersions: string[],
  kinds: string[],
  rest: Omit<ApiChange, "apiVersion" | "kind">,
): ApiChange[] {
  return apiVersions.flatMap((apiVersion) => kinds.map((kind) => ({ apiVersion, kind, ...rest })));
}

/** Every removed or deprecated built-in API that a manifest written since 1.16 may still use. */
export const API_CHANGES: readonly ApiChange[] = [
  // Removed in 1.16.
  ...each(["extensions/v1beta1", "apps/v1beta1", "apps/v1beta2"], ["Deployment", "StatefulSet"], {
    deprecatedIn: "1.9",
    removedIn: "1.16",
    replacement: "apps/v1",
  }),
  ...each(["extensions/v1beta1", "apps/v1beta2"], ["DaemonSet", "ReplicaSet"], {
    deprecatedIn: "1.9",
    removedIn: "1.16",
    replacement: "apps/v1",
  }),
  ...each(["extensions/v1beta1"], ["NetworkPolicy"], {
    deprecatedIn: "1.9",
    removedIn: "1.16",
    replacement: "networking.k8s.io/v1",
  }),
  ...each(["extensions/v1beta1"], ["PodSecurityPolicy"], {
    deprecatedIn: "1.11",
    removedIn: "1.16",
    replacement: "none (removed in 1.25)",
    note: PSP_NOTE,
  }),
  // Removed in 1.22.
  ...each(
    ["admissionregistration.k8s.io/v1beta1"],
    ["MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"],
    { deprecatedIn: "1.16", removedIn: "1.22", replacement: "admissionregistration.k8s.io/v1" },
  ),
  ...each(["apiextensions.k8s.io/v1beta1"], ["CustomResourceDefinition"], {
    deprecatedIn: "1.16",
    removedIn: "1.22",
    replacement: "apiextensions.k8s.io/v1",
  }),
  ...each(["apiregistration.k8s.io/v1beta1"], ["APIService"], {
    deprecatedIn: "1.19",
    removedIn: "1.22",
    replacement: "apiregistration.k8s.io/v1",
  }),
  ...each(["authentication.k8s.io/v1beta1"], ["TokenReview"], {
    deprecatedIn: "1.19",
    removedIn: "1.22",
    replacement: "authentication.k8s.io/v1",
  }),
  ...each(
    ["authorization.k8s.io/v1beta1"],
    ["SubjectAccessReview", "LocalSubjectAccessReview", "SelfSubjectAccessReview"],
    { deprecatedIn: "1.19", removedIn: "1.22", replacement: "authorization.k8s.io/v1" },
  ),
  ...each(["certificates.k8s.io/v1beta1"], ["CertificateSigningRequest"], {
    deprecatedIn: "1.19",
    removedIn: "1.22",
    replacement: "certificates.k8s.io/v1",
  }),
  ...each(["coordination.k8s.io/v1beta1"], ["Lease"], {
    deprecatedIn: "1.19",
    removedIn: "1.22",
    replacement: "coordination.k8s.io/v1",
  }),
  ...each(["extensions/v1beta1", "networking.k8s.io/v1beta1"], ["Ingress"], {
    deprecatedIn: "1.14",
    removedIn: "1.22",
    replacement: "networking.k8s.io/v1",
  }),
  ...each(["networking.k8s.io/v1beta1"], ["IngressClass"], {
    deprecatedIn: "1.19",
    removedIn: "1.22",
    replacement: "networking.k8s.io/v1",
  }),
  ...each(
    ["rbac.authorization.k8s.io/v1beta1"],
    ["ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"],
    { deprecatedIn: "1.17", removedIn: "1.22", replacement: "rbac.authorization.k8s.io/v1" },
  ),
  ...each(["scheduling.k8s.io/v1beta1"], ["PriorityClass"], {
    deprecatedIn: "1.14",
    removedIn: "1.22",
    replacement: "scheduling.k8s.io/v1",
  }),
  ...each(["storage.k8s.io/v1beta1"], ["CSIDriver", "CSINode", "StorageClass", "VolumeAttachment"], {
    deprecatedIn: "1.19",
    removedIn: "1.22",
    replacement: "storage.k8s.io/v1",
  }),
  // Removed in 1.25.
  ...each(["batch/v1beta1"], ["CronJob"], {
    deprecatedIn: "1.21",
    removedIn: "1.25",
    replacement: "batch/v1",
  }),
  ...each(["discovery.k8s.io/v1beta1"], ["EndpointSlice"], {
    deprecatedIn: "1.21",
    removedIn: "1.25",
    replacement: "discovery.k8s.io/v1",
  }),
  ...each(["events.k8s.io/v1beta1"], ["Event"], {
    deprecatedIn: "1.19",
    removedIn: "1.25",
    replacement: "events.k8s.io/v1",
  }),
  ...each(["autoscaling/v2beta1"], ["HorizontalPodAutoscaler"], {
    deprecatedIn: "1.22",
    removedIn: "1.25",
    replacement: "autoscaling/v2",
  }),
  ...each(["policy/v1beta1"], ["PodDisruptionBudget"], {
    deprecatedIn: "1.21",
    removedIn: "1.25",
    replacement: "policy/v1",
    note: "policy/v1: an empty selector now selects every pod in the namespace",
  }),
  ...each(["policy/v1beta1"], ["PodSecurityPolicy"], {
    deprecatedIn: "1.21",
    removedIn: "1.25",
    replacement: "none: Pod Security Admission",
    note: PSP_NOTE,
  }),
  ...each(["node.k8s.io/v1beta1"], ["RuntimeClass"], {
    deprecatedIn: "1.20",
    removedIn: "1.25",
    replacement: "node.k8s.io/v1",
  }),
  // Removed in 1.26.
  ...each(["flowcontrol.apiserver.k8s.io/v1beta1"], ["FlowSchema", "PriorityLevelConfiguration"], {
    deprecatedIn: "1.23",
    removedIn: "1.26",
    replacement: "flowcontrol.apiserver.k8s.io/v1",
  }),
  ...each(["autoscaling/v2beta2"], ["HorizontalPodAutoscaler"], {
    deprecatedIn: "1.23",
    removedIn: "1.26",
    replacement: "autoscaling/v2",
  }),
  // Removed in 1.27.
  ...each(["storage.k8s.io/v1beta1"], ["CSIStorageCapacity"], {
    deprecatedIn: "1.24",
    removedIn: "1.27",
    replacement: "storage.k8s.io/v1",
  }),
  // Removed in 1.29.
  ...each(["flowcontrol.apiserver.k8s.io/v1beta2"], ["FlowSchema", "PriorityLevelConfiguration"], {
    deprecatedIn: "1.26",
    removedIn: "1.29",
    replacement: "flowcontrol.apiserver.k8s.io/v1",
  }),
  // Removed in 1.32.
  ...each(["flowcontrol.apiserver.k8s.io/v1beta3"], ["FlowSchema", "PriorityLevelConfiguration"], {
    deprecatedIn: "1.29",
    removedIn: "1.32",
    replacement: "flowcontrol.apiserver.k8s.io/v1",
  }),
];

export function parseKubeVersion(text: string): KubeVersion {
  const m = /^v?(\d+)\.(\d+)(?:\.\d+)?$/.exec(text.trim());
  if (!m) throw new Error(`expected a Kubernetes version like "1.28", got ${JSON.stringify(text)}`);
  return [Number(m[1]), Number(m[2])];
}

export function compareKubeVersions(a: KubeVersion, b: KubeVersion): number {
  return a[0] - b[0] || a[1] - b[1];
}

export type Verdict =
  | { status: "ok" }
  | { status: "deprecated"; change: ApiChange }
  | { status: "removed"; change: ApiChange };

const BY_KEY = new Map(API_CHANGES.map((c) => [`${c.apiVersion} ${c.kind}`, c]));

/**
 * What `apiVersion`/`kind` means on a cluster at `target`: removed (the apply fails),
 * deprecated (served, with a warning), or fine. Unknown kinds (custom resources) are fine.
 */
export function apiVerdict(apiVersion: string, kind: string, target: KubeVersion): Verdict {
  const change = BY_KEY.get(`${apiVersion} ${kind}`);
  if (!change) return { status: "ok" };
  if (change.removedIn && compareKubeVersions(parseKubeVersion(change.removedIn), target) <= 0) {
    return { status: "removed", change };
  }
  if (compareKubeVersions(parseKubeVersion(change.deprecatedIn), target) <= 0) {
    return { status: "deprecated", change };
  }
  return { status: "ok" };
}
