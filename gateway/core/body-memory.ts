import { getHeapStatistics, setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

type Collect = (options: { type: "minor" | "major" }) => void;

let collect: Collect | undefined;

/** V8's `gc()`, made available without starting Node with `--expose-gc`. */
function collector(): Collect {
  if (!collect) {
    setFlagsFromString("--expose-gc");
    collect = runInNewContext("gc") as Collect;
  }
  return collect;
}

/**
 * Keeps the memory that streamed bodies leave behind small.
 *
 * Every socket read allocates a fresh buffer of up to 64 KiB outside the V8 heap. Once written on, the
 * buffer is garbage, but V8 only counts its small JS wrapper toward the young generation, so on a bulk
 * transfer tens of megabytes of dead buffers pile up before the next scavenge, and V8's own
 * external-memory trigger only fires after 64 MiB. This watch samples V8's external memory while
 * requests are in flight and runs a young-generation GC (a scavenge, well under a millisecond here) as
 * soon as it has grown by `scavengeAfter` bytes. Small-body traffic rarely grows external memory that
 * fast, so it pays nothing; a 1 GiB transfer stays within a few MiB of garbage. See docs/benchmarks.md.
 */
export class BodyMemoryWatch {
  private timer: NodeJS.Timeout | undefined;
  private baseline = 0;
  /** Scavenges this watch has run (exposed for tests and metrics). */
  scavenges = 0;

  private readonly scavengeAfter: number;
  private readonly inflight: () => number;
  private readonly intervalMs: number;

  /** `scavengeAfter` 0 turns the watch off; `inflight` says whether any request is still running. */
  constructor(scavengeAfter: number, inflight: () => number, intervalMs = 5) {
    this.scavengeAfter = scavengeAfter;
    this.inflight = inflight;
    this.intervalMs = intervalMs;
  }

  /** Called per request: starts sampling if it is not running. Cheap when it is. */
  touch(): void {
    if (this.timer !== undefined || this.scavengeAfter <= 0) return;
    this.baseline = getHeapStatistics().external_memory;
    this.timer = setInterval(() => this.sample(), this.intervalMs);
    this.timer.unref();
  }

  private sample(): void {
    if (this.inflight() === 0) {
      this.stop();
      return;
    }
    const external = getHeapStatistics().external_memory;
    if (external - this.baseline > this.scavengeAfter) {
      collector()({ type: "minor" });
      this.scavenges++;
      this.baseline = getHeapStatistics().external_memory;
    } else if (external < this.baseline) {
      this.baseline = external;
    }
  }

  get running(): boolean {
    return this.timer !== undefined;
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }
}
