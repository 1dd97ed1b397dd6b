import type { Endpoint } from "./endpoint.ts";

/**
 * Weighted least-outstanding-requests among available endpoints: the lowest (outstanding+1)/weight wins;
 * ties rotate so equal endpoints share load. `skip` holds endpoints already tried by this request.
 */
export function pickLeastOutstanding(
  endpoints: readonly Endpoint[],
  now: number,
  rotation: number,
  skip: ReadonlySet<Endpoint> | undefined,
): Endpoint | undefined {
  const n = endpoints.length;
  let best: Endpoint | undefined;
  let bestScore = Number.POSITIVE_INFINITY;
  for (let i = 0; i < n; i++) {
    const e = endpoints[(i + rotation) % n]!;
    if (!e.available(now) || skip?.has(e)) continue;
    const score = (e.outstanding + 1) / e.weight;
    if (score < bestScore) {
      best = e;
      bestScore = score;
    }
  }
  return best;
}

/**
 * The regions to try, in order: the preferred one, then the configured fallback order, then any other
 * region of the service. A strict request (writes pinned to one region) only gets the preferred one.
 */
export function regionOrder(
  preferred: string,
  strict: boolean,
  fallback: readonly string[],
  serviceRegions: readonly string[],
): string[] {
  if (strict) return [preferred];
  const out = [preferred];
  for (const r of fallback) if (!out.includes(r)) out.push(r);
  for (const r of serviceRegions) if (!out.includes(r)) out.push(r);
  return out;
}
