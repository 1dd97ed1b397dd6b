/**
 * The filter registry: every feature that can sit on a route's chain. A feature is one folder
 * (gateway/<feature>/) exporting a FilterFactory; adding one line here is the only wiring it needs.
 * Features load lazily, only when a config uses them, so a plain proxy never pays for sharp or jose.
 */
import type { FilterFactory } from "./core/types.ts";

// biome-ignore lint/suspicious/noExplicitAny: each factory validates its own config type.
type AnyFactory = FilterFactory<any, any>;

export const FILTERS: Readonly<Record<string, () => Promise<AnyFactory>>> = {
  auth: () => import("./auth/filter.ts").then((m) => m.authFilter),
  cache: () => import("./cache/filter.ts").then((m) => m.cacheFilter),
  geo: () => import("./geo/filter.ts").then((m) => m.geoFilter),
  headers: () => import("./headers/filter.ts").then((m) => m.headersFilter),
  images: () => import("./images/filter.ts").then((m) => m.imagesFilter),
};
