import type { Registry } from "prom-client";

export interface Sample {
  readonly labels?: Readonly<Record<string, string>>;
  readonly value: number;
}

/**
 * A Prometheus metric whose samples come from the latest snapshot a job took, read at scrape time.
 * prom-client's Gauge/Counter cannot be "absent" once registered and counters cannot be set to a
 * kernel's absolute value; this renders exactly the samples the snapshot has (none = metric absent).
 */
export class SnapshotMetric {
  readonly name: string;
  readonly help: string;
  readonly type: "gauge" | "counter";
  readonly aggregator = "sum" as const;
  readonly #samples: () => readonly Sample[];

  constructor(opts: {
    name: string;
    help: string;
    type: "gauge" | "counter";
    samples: () => readonly Sample[];
  }) {
    this.name = opts.name;
    this.help = opts.help;
    this.type = opts.type;
    this.#samples = opts.samples;
  }

  get() {
    return {
      name: this.name,
      help: this.help,
      type: this.type,
      aggregator: this.aggregator,
      values: this.#samples().map((s) => ({ labels: s.labels ?? {}, value: s.value })),
    };
  }

  reset(): void {}
}

/** Registers a set of snapshot metrics on a registry (replacing none: names must be unique). */
export function registerSnapshotMetrics(registry: Registry, metrics: SnapshotMetric[]): void {
  for (const m of metrics) registry.registerMetric(m as never);
}

/**
 * A factory of metrics named `prefix + name` whose samples are derived from `source()` at scrape time;
 * while the source has no snapshot the metric is absent.
 */
export function snapshotMetrics<S>(prefix: string, source: () => S | undefined) {
  return (
    name: string,
    type: "gauge" | "counter",
    help: string,
    samples: (s: S) => readonly Sample[] | undefined,
  ): SnapshotMetric =>
    new SnapshotMetric({
      name: prefix + name,
      help,
      type,
      samples: () => {
        const s = source();
        return (s && samples(s)) ?? [];
      },
    });
}

/** One unlabelled sample, or none for a missing or non-finite reading. */
export function single(v: number | undefined): Sample[] {
  return v === undefined || !Number.isFinite(v) ? [] : [{ value: v }];
}
