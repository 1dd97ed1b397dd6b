/** Passive outlier detection as a pure state transition, so every edge is unit-tested. */

export interface OutlierPolicy {
  consecutiveFailures: number;
  baseEjection: number;
  maxEjection: number;
}

export interface OutlierState {
  consecutiveFailures: number;
  /** Times ejected without a clean recovery since; drives the exponential back-off. */
  ejections: number;
  ejectedUntil: number;
  /** Successes since the last ejection ended; a clean run resets `ejections`. */
  successesSinceReturn: number;
}

export const FRESH_OUTLIER_STATE: OutlierState = {
  consecutiveFailures: 0,
  ejections: 0,
  ejectedUntil: 0,
  successesSinceReturn: 0,
};

/** Ejection length for the n-th consecutive ejection: base·2^(n−1), capped. */
export function ejectionDuration(policy: OutlierPolicy, ejections: number): number {
  return Math.min(policy.maxEjection, policy.baseEjection * 2 ** Math.max(0, ejections - 1));
}

export function recordSuccess(policy: OutlierPolicy, s: OutlierState): OutlierState {
  const successes = s.successesSinceReturn + 1;
  // After as many clean answers as it took to eject, forget past ejections (back-off starts over).
  const clean = successes >= policy.consecutiveFailures;
  return {
    consecutiveFailures: 0,
    ejections: clean ? 0 : s.ejections,
    ejectedUntil: s.ejectedUntil,
    successesSinceReturn: clean ? 0 : successes,
  };
}

/**
 * Counts a failure. `mayEject` says whether the region can lose another endpoint (max-ejected share);
 * returns the new state and whether this failure ejected the endpoint.
 */
export function recordFailure(
  policy: OutlierPolicy,
  s: OutlierState,
  now: number,
  mayEject: boolean,
): { state: OutlierState; ejected: boolean } {
  const failures = s.consecutiveFailures + 1;
  if (failures >= policy.consecutiveFailures && now >= s.ejectedUntil && mayEject) {
    const ejections = s.ejections + 1;
    return {
      state: {
        consecutiveFailures: 0,
        ejections,
        ejectedUntil: now + ejectionDuration(policy, ejections),
        successesSinceReturn: 0,
      },
      ejected: true,
    };
  }
  return { state: { ...s, consecutiveFailures: failures, successesSinceReturn: 0 }, ejected: false };
}

/** How many of `total` endpoints may be ejected at once; at least one when there are two or more. */
export function maxEjectable(total: number, maxEjectedPercent: number): number {
  if (total <= 1) return maxEjectedPercent >= 100 ? total : 0;
  return Math.max(1, Math.floor((total * maxEjectedPercent) / 100));
}
