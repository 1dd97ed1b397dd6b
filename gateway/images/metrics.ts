import { Counter, Gauge, Histogram, type Registry } from "prom-client";

/** The image pipeline's metrics; created once per process (FilterSetup.shared). */
export class ImageMetrics {
  readonly transforms: Counter<"format">;
  readonly duration: Histogram<"format">;
  readonly bytes: Counter<"kind">;
  readonly cache: Counter<"result">;
  readonly queueDepth: Gauge;
  readonly rejections: Counter;
  readonly failures: Counter<"code">;
  constructor(registry: Registry, depth: () => number) {
    const registers = [registry];
    this.transforms = new Counter({
      name: "edgeway_image_transforms_total",
      help: "Image variants produced, by output format.",
      labelNames: ["format"],
      registers,
    });
    this.duration = new Histogram({
      name: "edgeway_image_transform_duration_seconds",
      help: "Time to decode, resize and encode one variant (queue wait excluded).",
      labelNames: ["format"],
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30],
      registers,
    });
    this.bytes = new Counter({
      name: "edgeway_image_bytes_total",
      help: "Image bytes read from sources (kind=source) and sent to clients (kind=served).",
      labelNames: ["kind"],
      registers,
    });
    this.cache = new Counter({
      name: "edgeway_image_cache_requests_total",
      help: "Variant lookups: hit (memory or disk), miss (this request transformed), coalesced (joined one in flight).",
      labelNames: ["result"],
      registers,
    });
    this.queueDepth = new Gauge({
      name: "edgeway_image_queue_depth",
      help: "Transforms running or waiting.",
      registers,
      collect() {
        this.set(depth());
      },
    });
    this.rejections = new Counter({
      name: "edgeway_image_queue_rejections_total",
      help: "Transforms refused with 503 because the queue was full.",
      registers,
    });
    this.failures = new Counter({
      name: "edgeway_image_failures_total",
      help: "Image requests refused, by problem code (bad source, limits, signature…).",
      labelNames: ["code"],
      registers,
    });
  }
}
