/**
 * The filter registry: every feature that can sit on a route's chain. A feature is one folder
 * (gateway/<feature>/) exporting a FilterFactory; adding it here is the only wiring it needs.
 */
import { authFilter } from "./auth/filter.ts";
import { cacheFilter } from "./cache/filter.ts";
import type { FilterFactory } from "./core/types.ts";
import { headersFilter } from "./headers/filter.ts";
import { imagesFilter } from "./images/filter.ts";

// biome-ignore lint/suspicious/noExplicitAny: each factory validates its own config type.
export const FILTERS: readonly FilterFactory<any, any>[] = [authFilter, cacheFilter, headersFilter, imagesFilter];
