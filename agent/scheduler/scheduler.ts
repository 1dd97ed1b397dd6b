import { SpanStatusCode } from "@opentelemetry/api";
import cron, { type ScheduledTask } from "node-cron";
import type { Telemetry } from "../../lib/telemetry/index.ts";
import { Counter, Gauge, Histogram } from "../metrics/prom.ts";
import type { Job, JobOutcome } from "./job.ts";

export type RunResult = "success" | "failure" | "timeout" | "skipped_overlap";

/** What one trigger of a job came to (returned to manual triggers, kept for `/status`). */
export interface RunRecord {
  readonly job: string;
  readonly result: RunResult;
  readonly manual: boolean;
  readonly startedAt: string;
  readonly durationMs: number;
  readonly summary?: string;
  readonly error?: string;
  readonly details?: unknown;
}

export interface JobState {
  readonly name: string;
  readonly schedule: string | null;
  readonly timeoutMs: number;
  readonly jitterMs: number;
  readonly running: boolean;
  /** A run whose timeout fired but whose promise has not settled yet (it blocks the next run). */
  readonly overdue: boolean;
  readonly nextRun: string | null;
  readonly lastRun: RunRecord | null;
  readonly lastSuccessAt: string | null;
  readonly lastError: string | null;
  readonly consecutiveFailures: number;
  readonly runs: Readonly<Record<RunResult, number>>;
  readonly status?: unknown;
}

/** A uniformly random delay in [0, jitterMs]; `random` is injectable so tests are exact. */
export function jitterDelay(jitterMs: number, random: () => number = Math.random): number {
  if (!(jitterMs > 0)) return 0;
  return Math.floor(random() * (jitterMs + 1));
}

/** Throws when a cron expression is malformed; the message names the bad field. */
export function assertCronExpression(expr: string): void {
  const v = cron.validateDetailed(expr);
  if (!v.valid) {
    throw new Error(v.errors.map((e) => `${e.field}: ${e.message}`).join("; ") || "invalid cron expression");
  }
}

interface Slot {
  job: Job;
  task: ScheduledTask | undefined;
  running: Promise<RunRecord> | undefined;
  overdue: boolean;
  controller: AbortController | undefined;
  lastRun: RunRecord | null;
  lastSuccessAt: number | null;
  lastError: string | null;
  consecutiveFailures: number;
  runs: Record<RunResult, number>;
}

export interface SchedulerOptions {
  telemetry: Telemetry;
  jobs: Job[];
  random?: () => number;
}

/**
 * Runs agent jobs on node-cron: one run of a job at a time (a trigger during a run is counted as
 * skipped_overlap), a random start delay, a timeout that aborts the job's signal, and per-job metrics,
 * spans and logs. Manual triggers share the same path, so they get the same guarantees.
 */
export class Scheduler {
  readonly #telemetry: Telemetry;
  readonly #slots = new Map<string, Slot>();
  readonly #random: () => number;
  readonly #lastSuccess: Gauge<"job">;
  readonly #duration: Histogram<"job">;
  readonly #runsTotal: Counter<"job" | "result">;
  readonly #running: Gauge<"job">;
  #stopping = false;

  constructor(opts: SchedulerOptions) {
    this.#telemetry = opts.telemetry;
    this.#random = opts.random ?? Math.random;
    const registers = [opts.telemetry.registry];
    this.#lastSuccess = new Gauge({
      name: "edgeway_agent_job_last_success_timestamp_seconds",
      help: "Unix time of the job's last successful run.",
      labelNames: ["job"],
      registers,
    });
    this.#duration = new Histogram({
      name: "edgeway_agent_job_duration_seconds",
      help: "Duration of job runs (all results except skipped_overlap).",
      labelNames: ["job"],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600],
      registers,
    });
    this.#runsTotal = new Counter({
      name: "edgeway_agent_job_runs_total",
      help: "Job runs by result: success, failure, timeout, skipped_overlap.",
      labelNames: ["job", "result"],
      registers,
    });
    this.#running = new Gauge({
      name: "edgeway_agent_job_running",
      help: "1 while a run of the job is in progress.",
      labelNames: ["job"],
      registers,
    });
    for (const job of opts.jobs) {
      if (this.#slots.has(job.name)) throw new Error(`duplicate job name "${job.name}"`);
      if (job.schedule !== undefined) assertCronExpression(job.schedule);
      this.#slots.set(job.name, {
        job,
        task: undefined,
        running: undefined,
        overdue: false,
        controller: undefined,
        lastRun: null,
        lastSuccessAt: null,
        lastError: null,
        consecutiveFailures: 0,
        runs: { success: 0, failure: 0, timeout: 0, skipped_overlap: 0 },
      });
      for (const result of ["success", "failure", "timeout", "skipped_overlap"] as const) {
        this.#runsTotal.inc({ job: job.name, result }, 0);
      }
      this.#running.set({ job: job.name }, 0);
    }
  }

  get jobNames(): string[] {
    return [...this.#slots.keys()];
  }

  /** Puts every scheduled job on node-cron. */
  start(): void {
    for (const slot of this.#slots.values()) {
      if (slot.job.schedule === undefined || slot.task) continue;
      slot.task = cron.schedule(
        slot.job.schedule,
        () => {
          // Never throws: failures are recorded by #run.
          void this.trigger(slot.job.name, { manual: false });
        },
        { name: slot.job.name, noOverlap: false },
      );
    }
  }

  /**
   * Starts a run now (after jitter for scheduled runs) unless one is in progress, in which case the
   * result is skipped_overlap. Resolves when the run ends or times out.
   */
  async trigger(
    name: string,
    opts: { manual: boolean; args?: Record<string, string>; jitter?: boolean },
  ): Promise<RunRecord> {
    const slot = this.#slots.get(name);
    if (!slot) throw new Error(`unknown job "${name}" (jobs: ${this.jobNames.join(", ") || "none"})`);
    if (slot.running || this.#stopping) {
      const rec: RunRecord = {
        job: name,
        result: "skipped_overlap",
        manual: opts.manual,
        startedAt: new Date().toISOString(),
        durationMs: 0,
        summary: this.#stopping ? "agent is stopping" : "previous run still in progress",
      };
      slot.runs.skipped_overlap++;
      this.#runsTotal.inc({ job: name, result: "skipped_overlap" });
      this.#telemetry.logger.warn(
        { job: name, manual: opts.manual },
        "job run skipped: previous run still in progress",
      );
      return rec;
    }
    const promise = this.#run(slot, opts);
    slot.running = promise;
    return promise;
  }

  async #run(
    slot: Slot,
    opts: { manual: boolean; args?: Record<string, string>; jitter?: boolean },
  ): Promise<RunRecord> {
    const { job } = slot;
    const { logger, tracer } = this.#telemetry;
    const controller = new AbortController();
    slot.controller = controller;
    this.#running.set({ job: job.name }, 1);
    try {
      const delay = (opts.jitter ?? !opts.manual) ? jitterDelay(job.jitterMs, this.#random) : 0;
      if (delay > 0) await sleep(delay, controller.signal);
      return await tracer.startActiveSpan(`agent.job ${job.name}`, async (span) => {
        span.setAttribute("edgeway.job", job.name);
        span.setAttribute("edgeway.job.manual", opts.manual);
        const started = performance.now();
        const startedAt = new Date();
        const jobLogger = logger.child({ job: job.name });
        let timer: NodeJS.Timeout | undefined;
        const timedOut = new Promise<"timeout">((resolve) => {
          timer = setTimeout(() => {
            controller.abort(new Error(`job timed out after ${job.timeoutMs}ms`));
            resolve("timeout");
          }, job.timeoutMs);
        });
        const work = Promise.resolve()
          .then(() =>
            job.run({
              signal: controller.signal,
              logger: jobLogger,
              span,
              telemetry: this.#telemetry,
              manual: opts.manual,
              args: opts.args ?? {},
            }),
          )
          .then(
            (outcome) => ({ ok: true as const, outcome }),
            (error: unknown) => ({ ok: false as const, error }),
          );
        const first = await Promise.race([work, timedOut]);
        clearTimeout(timer);
        const durationMs = performance.now() - started;
        let rec: RunRecord;
        if (first === "timeout") {
          slot.overdue = true;
          rec = {
            job: job.name,
            result: "timeout",
            manual: opts.manual,
            startedAt: startedAt.toISOString(),
            durationMs,
            error: `timed out after ${job.timeoutMs}ms`,
          };
          // Keep the slot busy until the job really returns, so a stuck job never runs twice.
          slot.running = work.then(() => rec);
          void work.then(() => {
            slot.overdue = false;
          });
        } else if (first.ok) {
          const outcome: JobOutcome = first.outcome ?? {};
          rec = {
            job: job.name,
            result: "success",
            manual: opts.manual,
            startedAt: startedAt.toISOString(),
            durationMs,
            summary: outcome.summary,
            details: outcome.details,
          };
        } else {
          rec = {
            job: job.name,
            result: "failure",
            manual: opts.manual,
            startedAt: startedAt.toISOString(),
            durationMs,
            error: errorMessage(first.error),
          };
        }
        this.#record(slot, rec);
        span.setAttribute("edgeway.job.result", rec.result);
        if (rec.result === "success") span.setStatus({ code: SpanStatusCode.OK });
        else {
          span.setStatus({ code: SpanStatusCode.ERROR, message: rec.error });
          if (first !== "timeout" && !first.ok) span.recordException(first.error as Error);
        }
        span.end();
        const fields = {
          result: rec.result,
          durationMs: Math.round(durationMs),
          manual: opts.manual,
          summary: rec.summary,
          error: rec.error,
        };
        // Scheduled successes of frequent readers would flood the log: debug, unless started by hand.
        if (rec.result === "success") jobLogger[opts.manual ? "info" : "debug"](fields, "job run finished");
        else jobLogger.error(fields, "job run failed");
        return rec;
      });
    } catch (err) {
      // Only the jitter sleep can land here (aborted by shutdown).
      const rec: RunRecord = {
        job: job.name,
        result: "failure",
        manual: opts.manual,
        startedAt: new Date().toISOString(),
        durationMs: 0,
        error: errorMessage(err),
      };
      this.#record(slot, rec);
      return rec;
    } finally {
      const current = slot.running;
      // A timed-out run swapped in its own "still going" promise: release the slot only when that settles.
      void Promise.resolve(current).then(() => {
        if (slot.running === current) {
          slot.running = undefined;
          slot.controller = undefined;
          this.#running.set({ job: job.name }, 0);
        }
      });
    }
  }

  #record(slot: Slot, rec: RunRecord): void {
    const name = slot.job.name;
    slot.lastRun = rec;
    slot.runs[rec.result]++;
    this.#runsTotal.inc({ job: name, result: rec.result });
    this.#duration.observe({ job: name }, rec.durationMs / 1000);
    if (rec.result === "success") {
      slot.lastSuccessAt = Date.now();
      slot.lastError = null;
      slot.consecutiveFailures = 0;
      this.#lastSuccess.set({ job: name }, slot.lastSuccessAt / 1000);
    } else {
      slot.lastError = rec.error ?? rec.result;
      slot.consecutiveFailures++;
    }
  }

  /** Each job's state for `/status`. */
  status(): JobState[] {
    return [...this.#slots.values()].map((slot) => {
      let status: unknown;
      try {
        status = slot.job.status?.();
      } catch (err) {
        status = { error: errorMessage(err) };
      }
      const next = slot.task?.getNextRun();
      return {
        name: slot.job.name,
        schedule: slot.job.schedule ?? null,
        timeoutMs: slot.job.timeoutMs,
        jitterMs: slot.job.jitterMs,
        running: slot.running !== undefined,
        overdue: slot.overdue,
        nextRun: next ? next.toISOString() : null,
        lastRun: slot.lastRun,
        lastSuccessAt: slot.lastSuccessAt ? new Date(slot.lastSuccessAt).toISOString() : null,
        lastError: slot.lastError,
        consecutiveFailures: slot.consecutiveFailures,
        runs: { ...slot.runs },
        ...(status !== undefined ? { status } : {}),
      };
    });
  }

  /**
   * Shutdown: no new runs; running jobs get `graceMs` to finish, then their signal aborts (checkpoint
   * and return) and they get `abortGraceMs` more. Then every job's close() runs.
   */
  async stop(graceMs = 30_000, abortGraceMs = 5_000): Promise<void> {
    this.#stopping = true;
    for (const slot of this.#slots.values()) {
      await slot.task?.destroy();
      slot.task = undefined;
    }
    const inFlight = () => [...this.#slots.values()].flatMap((s) => (s.running ? [s.running] : []));
    if (!(await settlesWithin(inFlight(), graceMs))) {
      for (const slot of this.#slots.values()) slot.controller?.abort(new Error("agent is shutting down"));
      await settlesWithin(inFlight(), abortGraceMs);
    }
    for (const slot of this.#slots.values()) {
      await slot.job
        .close?.()
        .catch((err: unknown) =>
          this.#telemetry.logger.warn({ job: slot.job.name, err }, "job close failed"),
        );
    }
  }
}

async function settlesWithin(promises: Promise<unknown>[], ms: number): Promise<boolean> {
  if (promises.length === 0) return true;
  let timer: NodeJS.Timeout | undefined;
  const all = Promise.allSettled(promises).then(() => true);
  const late = new Promise<boolean>((r) => {
    timer = setTimeout(() => r(false), ms);
  });
  const done = await Promise.race([all, late]);
  clearTimeout(timer);
  return done;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message || err.name;
  return String(err);
}
