import { createRequire } from "node:module";
import {
  type Attributes,
  type Context,
  type Link,
  type SpanKind,
  SpanStatusCode,
  TraceFlags,
} from "@opentelemetry/api";
import type {
  ReadableSpan,
  Sampler,
  SamplingResult,
  Span,
  SpanProcessor,
} from "@opentelemetry/sdk-trace-node";

const require = createRequire(import.meta.url);
type Decisions = typeof import("@opentelemetry/sdk-trace-node").SamplingDecision;
let decisions: Decisions | undefined;
/** The SDK's SamplingDecision, loaded with the SDK: only a program that traces builds these samplers. */
const SamplingDecision = (): Decisions =>
  (decisions ??= (require("@opentelemetry/sdk-trace-node") as typeof import("@opentelemetry/sdk-trace-node"))
    .SamplingDecision);

/**
 * Keeping errors and slow requests at a higher rate than the head-sampling ratio, inside one process.
 *
 * Head sampling decides when a request starts, before anyone knows it will fail or be slow. With a keep
 * rule, traces the ratio did not pick are still *recorded* (not sampled: their traceparent flag stays
 * 00, so downstream services do not record them), their finished spans wait in a bounded buffer, and
 * when the local root span (the gateway's server span, an agent job's span) ends the whole local trace
 * is exported if the root is an error or took longer than the threshold, and dropped otherwise.
 * Recording every request costs span objects and attributes per request; export happens only for kept
 * traces. For whole-trace decisions across services, use the collector's tail sampling instead
 * (deploy/otel/collector.yaml).
 */
export interface KeepRule {
  /** Keep traces whose local root span has an error status. */
  errors: boolean;
  /** Keep traces whose local root span lasted at least this many milliseconds. */
  slowerThanMs: number | undefined;
}

export function keepRuleActive(rule: KeepRule): boolean {
  return rule.errors || rule.slowerThanMs !== undefined;
}

/** Root sampler: the ratio's "sample" stands; everything else is recorded so the keep rule can decide. */
export class RecordUnsampledSampler implements Sampler {
  private readonly ratio: Sampler;
  constructor(ratio: Sampler) {
    this.ratio = ratio;
  }
  shouldSample(
    context: Context,
    traceId: string,
    spanName: string,
    spanKind: SpanKind,
    attributes: Attributes,
    links: Link[],
  ): SamplingResult {
    const r = this.ratio.shouldSample(context, traceId, spanName, spanKind, attributes, links);
    const d = SamplingDecision();
    return r.decision === d.RECORD_AND_SAMPLED ? r : { decision: d.RECORD };
  }
  toString(): string {
    return `RecordUnsampled{${this.ratio.toString()}}`;
  }
}

/** Children of a recorded, unsampled local parent are recorded too (they may be kept with it). */
export class RecordSampler implements Sampler {
  shouldSample(): SamplingResult {
    return { decision: SamplingDecision().RECORD };
  }
  toString(): string {
    return "Record";
  }
}

function durationMs(span: ReadableSpan): number {
  return span.duration[0] * 1e3 + span.duration[1] / 1e6;
}

/** The span as the exporter should see it: sampled flag set, and why it was kept. */
function asKept(span: ReadableSpan, reason: string): ReadableSpan {
  const ctx = span.spanContext();
  const sampled = { ...ctx, traceFlags: ctx.traceFlags | TraceFlags.SAMPLED };
  return Object.create(span, {
    spanContext: { value: () => sampled },
    attributes: { value: { ...span.attributes, "edgeway.sampling.kept": reason } },
  }) as ReadableSpan;
}

/**
 * Span processor in front of the export processor: sampled spans pass straight through; recorded,
 * unsampled spans are held per trace until their local root ends, then forwarded or dropped by the rule.
 */
export class TailKeepProcessor implements SpanProcessor {
  private readonly next: SpanProcessor;
  private readonly rule: KeepRule;
  private readonly maxTraces: number;
  private readonly maxSpansPerTrace: number;
  /** traceId → finished spans of an undecided trace, oldest trace first (Map insertion order). */
  private readonly pending = new Map<string, ReadableSpan[]>();

  constructor(
    next: SpanProcessor,
    rule: KeepRule,
    opts: { maxTraces?: number; maxSpansPerTrace?: number } = {},
  ) {
    this.next = next;
    this.rule = rule;
    this.maxTraces = opts.maxTraces ?? 4096;
    this.maxSpansPerTrace = opts.maxSpansPerTrace ?? 128;
  }

  onStart(span: Span, parentContext: Context): void {
    this.next.onStart(span, parentContext);
  }

  onEnd(span: ReadableSpan): void {
    const ctx = span.spanContext();
    if (ctx.traceFlags & TraceFlags.SAMPLED) {
      this.next.onEnd(span);
      return;
    }
    const parent = span.parentSpanContext;
    const localRoot = parent === undefined || parent.isRemote === true;
    if (!localRoot) {
      let list = this.pending.get(ctx.traceId);
      if (!list) {
        if (this.pending.size >= this.maxTraces) {
          // Evict the oldest undecided trace: its root never ended or ends much later.
          const oldest = this.pending.keys().next().value;
          if (oldest !== undefined) this.pending.delete(oldest);
        }
        list = [];
        this.pending.set(ctx.traceId, list);
      }
      if (list.length < this.maxSpansPerTrace) list.push(span);
      return;
    }
    const children = this.pending.get(ctx.traceId);
    if (children) this.pending.delete(ctx.traceId);
    const reason = this.reason(span);
    if (!reason) return;
    if (children) for (const c of children) this.next.onEnd(asKept(c, reason));
    this.next.onEnd(asKept(span, reason));
  }

  private reason(root: ReadableSpan): string | undefined {
    if (this.rule.errors && root.status.code === SpanStatusCode.ERROR) return "error";
    if (this.rule.slowerThanMs !== undefined && durationMs(root) >= this.rule.slowerThanMs) return "slow";
    return undefined;
  }

  forceFlush(): Promise<void> {
    return this.next.forceFlush();
  }

  shutdown(): Promise<void> {
    this.pending.clear();
    return this.next.shutdown();
  }
}
