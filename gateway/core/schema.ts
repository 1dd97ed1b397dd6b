import { z } from "zod";
import { byteSize, duration } from "../../lib/config/index.ts";
import { telemetrySchema } from "../../lib/telemetry/schema.ts";

const listen = z.strictObject({
  host: z.string().default("127.0.0.1"),
  port: z.number().int().min(0).max(65535),
});

const endpointSchema = z.strictObject({
  url: z.url({ protocol: /^https?$/, error: 'expected an http(s) URL like "http://10.0.0.5:8080"' }),
  weight: z.number().int().min(1).max(1000).default(1),
});

const healthCheckSchema = z.strictObject({
  path: z.string().startsWith("/").default("/healthz"),
  interval: duration({ min: 50 }).default(5000),
  timeout: duration({ min: 10 }).default(2000),
  /** Consecutive successes before an unhealthy endpoint is healthy again. */
  healthyThreshold: z.number().int().min(1).default(2),
  /** Consecutive failures before a healthy endpoint is marked unhealthy. */
  unhealthyThreshold: z.number().int().min(1).default(3),
  /** Status codes counted as healthy (inclusive ranges). */
  expectStatus: z.tuple([z.number().int(), z.number().int()]).default([200, 399]),
});

const outlierSchema = z.strictObject({
  /** Consecutive connect errors or 502/503/504 answers that eject an endpoint. */
  consecutiveFailures: z.number().int().min(1).default(5),
  baseEjection: duration({ min: 10 }).default(30_000),
  maxEjection: duration({ min: 10 }).default(300_000),
  /** Never eject more than this share of a region's endpoints (keeps some capacity when all look bad). */
  maxEjectedPercent: z.number().min(0).max(100).default(50),
});

const serviceSchema = z.strictObject({
  /** Endpoints grouped by region: `endpoints: { us-east-1: [{url, weight}] }`. */
  endpoints: z
    .record(z.string().min(1), z.array(endpointSchema).min(1, "a region needs at least one endpoint"))
    .refine((r) => Object.keys(r).length > 0, "a service needs at least one region"),
  /** Upstream connections kept per endpoint. */
  connections: z.number().int().min(1).max(10_000).default(128),
  keepAlive: duration().default(4000),
  healthCheck: healthCheckSchema.optional(),
  outlierDetection: outlierSchema.prefault({}),
  /**
   * For https endpoints: a private CA, a client certificate for upstreams that require mTLS, and the
   * name to verify when endpoints are given by address. Read at start and on reload.
   */
  tls: z
    .strictObject({
      /** PEM CA bundle file that signs the upstreams' certificates (instead of the system CAs). */
      ca: z.string().min(1).optional(),
      /** PEM client certificate file (mTLS), with `key`. */
      cert: z.string().min(1).optional(),
      /** PEM private key file of `cert`. */
      key: z.string().min(1).optional(),
      /** Server name to send (SNI) and verify, when it is not the URL's host. */
      servername: z.string().min(1).optional(),
    })
    .refine((t) => (t.cert === undefined) === (t.key === undefined), {
      message: "cert and key go together (a client certificate needs its key)",
      path: ["key"],
    })
    .optional(),
  /** Retry budget: retries may add at most this share of requests (plus minPerSecond). */
  retryBudget: z
    .strictObject({
      ratio: z.number().min(0).max(1).default(0.2),
      minPerSecond: z.number().min(0).default(10),
    })
    .prefault({}),
});

const timeoutsSchema = z.strictObject({
  connect: duration({ min: 1 }).default(2000),
  /** From request sent to response headers received. */
  responseHeader: duration({ min: 1 }).default(30_000),
  /** Longest silence between two body chunks from the upstream. */
  idleBody: duration({ min: 1 }).default(60_000),
});

const matchSchema = z.strictObject({
  /** Exact host ("api.example.com") or a wildcard for one or more labels ("*.example.com"). Omit for any. */
  host: z
    .string()
    .regex(/^(\*\.)?[a-z0-9.-]+(:\d+)?$/i, 'expected a host like "api.example.com" or "*.example.com"')
    .optional(),
  /** Path prefix, matched on segment boundaries: "/api" matches "/api" and "/api/x", not "/apix". */
  path: z.string().startsWith("/", 'a path prefix starts with "/"').default("/"),
  methods: z.array(z.string().regex(/^[A-Z]+$/, "methods are upper-case tokens like GET")).optional(),
});

const routeSchema = z.strictObject({
  name: z
    .string()
    .regex(/^[a-zA-Z0-9_.-]+$/, "route names are [a-zA-Z0-9_.-] (they become metric labels)")
    .optional(),
  match: matchSchema.prefault({}),
  service: z.string().min(1),
  stripPrefix: z.boolean().default(false),
  /** Replaces the matched prefix with this one (e.g. "/v2"). */
  rewritePrefix: z.string().startsWith("/").optional(),
  preserveHost: z.boolean().default(true),
  timeouts: timeoutsSchema.prefault({}),
  maxBodySize: byteSize().prefault("10MiB"),
  retries: z
    .strictObject({
      attempts: z.number().int().min(0).max(5).default(2),
    })
    .prefault({}),
  /** Filters in order, outermost first: `- headers: {...}`. Validated by each feature's schema. */
  filters: z.array(z.record(z.string(), z.unknown())).default([]),
});

export const gatewaySchema = z
  .strictObject({
    server: z
      .strictObject({
        listen: listen.prefault({ port: 8080 }),
        /** Worker processes: a number, or "auto" for one per core. */
        workers: z.union([z.number().int().min(1).max(256), z.literal("auto")]).default(1),
        /** SIGTERM: how long in-flight requests may take before connections are cut. */
        drainTimeout: duration().default(30_000),
        /** Client must send all request headers within this (slowloris guard). */
        headersTimeout: duration({ min: 100 }).default(10_000),
        /** Whole request (headers and body) from a client, 0 = none (uploads can be long). */
        requestTimeout: duration().default(0),
        keepAliveTimeout: duration().default(5000),
        maxHeaderSize: byteSize().prefault("16KiB"),
        /** Name in Via and Server-Timing. */
        name: z.string().default("edgeway"),
        /**
         * Addresses of proxies in front of the gateway (a CDN, a load balancer) whose X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host and Forwarded
         * headers are kept and appended to. From anyone else those headers are dropped: clients cannot spoof them.
         */
        trustForwardedFrom: z.array(z.union([z.ipv4(), z.ipv6()])).default([]),
        /**
         * Run a young-generation GC once memory outside the JS heap (mostly socket read buffers of
         * streamed bodies) has grown by this much while requests are in flight; 0 leaves it to V8.
         */
        scavengeAfter: byteSize().prefault("4MiB"),
        /** TLS termination on the proxy listener (HTTPS, HTTP/1.1). Without it the listener is plain HTTP. */
        tls: z
          .strictObject({
            /** PEM certificate chain file, leaf first. */
            cert: z.string().min(1),
            /** PEM private key file. */
            key: z.string().min(1),
            minVersion: z.enum(["TLSv1.2", "TLSv1.3"]).default("TLSv1.2"),
            /** How often the two files are checked for a renewed certificate. */
            reloadInterval: duration({ min: 100 }).default(10_000),
            /** A plain-HTTP listener that answers every request with a 308 to the same URL over HTTPS. */
            redirectHttp: z
              .strictObject({
                listen,
                /** The HTTPS port clients use (a Service's 443 in front of the pod's port), in Location. */
                port: z.number().int().min(1).max(65535).default(443),
              })
              .optional(),
          })
          .optional(),
      })
      .prefault({}),
    admin: z
      .strictObject({
        listen: listen.prefault({ port: 9090 }),
        /** Bearer token required for mutating admin endpoints (revocation, purge). */
        token: z.string().min(16, "an admin token needs at least 16 characters").optional(),
      })
      .prefault({}),
    /** This gateway's own region: the default preferred region for upstream endpoints. */
    region: z.string().default("local"),
    /** Region order to fall back to when the preferred region has no healthy endpoint. */
    regionFallback: z.array(z.string()).default([]),
    /** A small origin the gateway starts itself, so a newcomer sees a real round trip. */
    demoOrigin: z
      .strictObject({
        enabled: z.boolean().default(false),
        listen: listen.prefault({ port: 8081 }),
      })
      .prefault({}),
    services: z.record(z.string().regex(/^[a-zA-Z0-9_.-]+$/), serviceSchema),
    routes: z.array(routeSchema).min(1, "at least one route is needed"),
    telemetry: telemetrySchema,
  })
  // Feature sections (auth:, cache:, images:, geo:) are validated by their factories.
  .catchall(z.unknown());

export type GatewayConfig = z.output<typeof gatewaySchema>;
export type RouteConfig = z.output<typeof routeSchema>;
export type ServiceConfig = z.output<typeof serviceSchema>;
export type TimeoutsConfig = z.output<typeof timeoutsSchema>;
export type HealthCheckConfig = z.output<typeof healthCheckSchema>;
