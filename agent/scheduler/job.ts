import type { Span } from "@opentelemetry/api";
import type { Logger } from "pino";
import type { Telemetry } from "../../lib/telemetry/index.ts";

/** What a job gets for one run. `signal` aborts on timeout or shutdown: checkpoint and return. */
export interface JobContext {
  readonly signal: AbortSignal;
  readonly logger: Logger;
  readonly span: Span;
  readonly telemetry: Telemetry;
  /** True when started by `edgeway agent run <job>` or the admin API rather than the schedule. */
  readonly manual: boolean;
  /** Free-form arguments from a manual trigger (e.g. a PITR target time for a drill). */
  readonly args: Readonly<Record<string, string>>;
}

/** One unit of scheduled agent work. The scheduler owns overlap, jitter, timeout, metrics and spans. */
export interface Job {
  readonly name: string;
  /** node-cron expression (with seconds field allowed); undefined means manual-only. */
  readonly schedule: string | undefined;
  readonly timeoutMs: number;
  /** Random delay 0..jitterMs before each scheduled run, so a fleet does not fire at once. */
  readonly jitterMs: number;
  run(ctx: JobContext): Promise<JobOutcome | undefined>;
  /** JSON-able state for `/status` (e.g. last restore time, top queries). */
  status?(): unknown;
  /** Called once at shutdown after runs have finished or checkpointed. */
  close?(): Promise<void>;
}

export interface JobOutcome {
  /** A short human summary for `/status` and the log. */
  summary?: string;
  details?: unknown;
}
