import { z } from "zod";
import { duration } from "../config/index.ts";

/** The `telemetry:` section shared by the gateway's and the agent's config files. */
export const telemetrySchema = z
  .strictObject({
    serviceName: z.string().min(1).optional(),
    environment: z.string().default("development"),
    region: z.string().optional(),
    logs: z
      .strictObject({
        level: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
        /** Access log lines (one per request) on or off. */
        access: z.boolean().default(true),
        /**
         * Share of the other requests that get an access line, where the log volume or its CPU is too
         * much: failed requests (status 400 and up, 499 included) and slow ones (`accessSlowerThan`)
         * always get theirs.
         */
        accessSample: z.number().min(0).max(1).default(1),
        /** Requests at least this slow always get an access line, whatever `accessSample` says. */
        accessSlowerThan: duration({ min: 1 }).optional(),
      })
      .prefault({}),
    metrics: z
      .strictObject({
        enabled: z.boolean().default(true),
        /** Node's default process collectors (CPU, heap, GC, event loop lag). */
        process: z.boolean().default(true),
      })
      .prefault({}),
    tracing: z
      .strictObject({
        /** OTLP/HTTP traces endpoint, e.g. http://127.0.0.1:4318/v1/traces. Export is off without it. */
        endpoint: z.url().optional(),
        headers: z.record(z.string(), z.string()).default({}),
        /** Parent-based trace-id ratio for new traces. */
        sampleRatio: z.number().min(0).max(1).default(0.01),
        /** How long one export may take before it is abandoned ("5s"; a number is milliseconds). */
        exportTimeout: duration({ min: 1 }).default(5000),
        /** Time between batch exports ("1s"). */
        batchDelay: duration({ min: 1 }).default(1000),
        /**
         * Keep errors and slow requests beyond the ratio: unsampled traces are recorded and exported
         * when their local root span is an error or slower than `slowerThan` (see docs/observability.md;
         * costs span recording on every request). Off unless one of them is set.
         */
        keep: z
          .strictObject({
            errors: z.boolean().default(false),
            slowerThan: duration({ min: 1 }).optional(),
          })
          .prefault({}),
      })
      .prefault({}),
  })
  .prefault({});

export type TelemetryConfig = z.output<typeof telemetrySchema>;
