/**
 * Which requests get an access line (`telemetry.logs.access`, `accessSample`, `accessSlowerThan`):
 * every failed and every slow request, and a sample of the rest. Pure, so the rule is tested alone.
 */
export interface AccessLogPolicy {
  readonly on: boolean;
  /** 0..1: the share of successful, fast requests that are logged. */
  readonly sample: number;
  readonly slowerThanMs: number | undefined;
}

export function accessLogPolicy(logs: {
  access: boolean;
  accessSample: number;
  accessSlowerThan?: number | undefined;
}): AccessLogPolicy {
  return { on: logs.access, sample: logs.accessSample, slowerThanMs: logs.accessSlowerThan };
}

export function keepAccessLine(
  policy: AccessLogPolicy,
  status: number,
  durationMs: number,
  random: () => number = Math.random,
): boolean {
  if (!policy.on) return false;
  if (policy.sample >= 1 || status >= 400) return true;
  if (policy.slowerThanMs !== undefined && durationMs >= policy.slowerThanMs) return true;
  return random() < policy.sample;
}
