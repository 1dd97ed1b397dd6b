import type { Metric, Registry } from "prom-client";

/** The shape prom-client's Registry renders and AggregatorRegistry sums. */
export interface HotMetricSnapshot {
  name: string;
  help: string;
  type: "counter" | "histogram";
  aggregator: "sum";
  values: { labels: Record<string, string | number>; value: number; metricName?: string }[];
}

/**
 * Counters and histograms for per-request paths. prom-client's `labels(...).inc()` hashes and validates
 * the label set on every call; here the caller resolves a cell once per label set (e.g. per route or
 * endpoint, cached) and each update is a plain number increment. The metric registers itself in a
 * prom-client Registry and renders in the same format, so `/metrics` and cluster aggregation
 * (AggregatorRegistry, summed across workers) treat it like any other metric.
 */

interface HotMetricOptions<L extends string> {
  name: string;
  help: string;
  labelNames: readonly L[];
  registers: Registry[];
}

/** One label set of a HotCounter. */
export class CounterCell {
  value = 0;
  readonly labels: Record<string, string>;
  constructor(labels: Record<string, string>) {
    this.labels = labels;
  }
  inc(n = 1): void {
    this.value += n;
  }
}

/** One label set of a HotHistogram: per-bucket counts (not cumulative), sum and count. */
export class HistogramCell {
  readonly labels: Record<string, string>;
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  private readonly upper: readonly number[];
  constructor(labels: Record<string, string>, upper: readonly number[]) {
    this.labels = labels;
    this.upper = upper;
    this.counts = new Float64Array(upper.length);
  }
  observe(v: number): void {
    const upper = this.upper;
    for (let i = 0; i < upper.length; i++) {
      if (v <= upper[i]!) {
        this.counts[i]!++;
        break;
      }
    }
    this.sum += v;
    this.count++;
  }
}

function labelObject(names: readonly string[], values: readonly string[]): Record<string, string> {
  if (values.length !== names.length)
    throw new Error(`expected ${names.length} label values (${names.join(", ")}), got ${values.length}`);
  const o: Record<string, string> = {};
  for (let i = 0; i < names.length; i++) o[names[i]!] = values[i]!;
  return o;
}

abstract class HotMetric<L extends string, C> {
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly L[];
  readonly aggregator = "sum" as const;
  protected readonly cells = new Map<string, C>();
  constructor(opts: HotMetricOptions<L>) {
    this.name = opts.name;
    this.help = opts.help;
    this.labelNames = opts.labelNames;
    for (const r of opts.registers) r.registerMetric(this as unknown as Metric);
  }
  /** The cell for these label values (in labelNames order). Cache it: this call builds a key. */
  cell(...values: string[]): C {
    const key = values.join("\u0000");
    let c = this.cells.get(key);
    if (!c) {
      c = this.create(labelObject(this.labelNames, values));
      this.cells.set(key, c);
    }
    return c;
  }
  /** Number of label sets (series) created so far. */
  get size(): number {
    return this.cells.size;
  }
  reset(): void {
    this.cells.clear();
  }
  protected abstract create(labels: Record<string, string>): C;
}

export class HotCounter<L extends string = string> extends HotMetric<L, CounterCell> {
  readonly type = "counter" as const;
  protected create(labels: Record<string, string>): CounterCell {
    return new CounterCell(labels);
  }
  get(): HotMetricSnapshot {
    const values: HotMetricSnapshot["values"] = [];
    for (const c of this.cells.values()) values.push({ labels: { ...c.labels }, value: c.value });
    return { name: this.name, help: this.help, type: "counter", aggregator: "sum", values };
  }
}

export class HotHistogram<L extends string = string> extends HotMetric<L, HistogramCell> {
  readonly type = "histogram" as const;
  readonly upperBounds: readonly number[];
  constructor(opts: HotMetricOptions<L> & { buckets: readonly number[] }) {
    super(opts);
    this.upperBounds = [...opts.buckets].sort((a, b) => a - b);
  }
  protected create(labels: Record<string, string>): HistogramCell {
    return new HistogramCell(labels, this.upperBounds);
  }
  get(): HotMetricSnapshot {
    const values: HotMetricSnapshot["values"] = [];
    const bucket = `${this.name}_bucket`;
    for (const c of this.cells.values()) {
      let acc = 0;
      for (let i = 0; i < this.upperBounds.length; i++) {
        acc += c.counts[i]!;
        values.push({ labels: { ...c.labels, le: this.upperBounds[i]! }, value: acc, metricName: bucket });
      }
      values.push({ labels: { ...c.labels, le: "+Inf" }, value: c.count, metricName: bucket });
      values.push({ labels: { ...c.labels }, value: c.sum, metricName: `${this.name}_sum` });
      values.push({ labels: { ...c.labels }, value: c.count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: "histogram", aggregator: "sum", values };
  }
}
