import { createRequire } from "node:module";
import type * as prom from "prom-client";

/**
 * prom-client's metric classes, loaded without prom-client's index module. The index also loads the
 * Pushgateway client (https, tls, zlib) and the cluster aggregator (cluster), which the agent never
 * uses: about 4 MB of its RSS (docs/benchmarks.md, agent section). These are the very classes the index
 * re-exports (one module cache), so metrics made here register and render like any other. prom-client
 * 15 has no "exports" map, which is what makes its lib/ files loadable; test/agent covers the paths.
 */
const require = createRequire(import.meta.url);

export const Counter = require("prom-client/lib/counter") as typeof prom.Counter;
export type Counter<T extends string = string> = prom.Counter<T>;
export const Gauge = require("prom-client/lib/gauge") as typeof prom.Gauge;
export type Gauge<T extends string = string> = prom.Gauge<T>;
export const Histogram = require("prom-client/lib/histogram") as typeof prom.Histogram;
export type Histogram<T extends string = string> = prom.Histogram<T>;
export type { Registry } from "prom-client";
