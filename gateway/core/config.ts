import { readFileSync } from "node:fs";
import type { z } from "zod";
import { ConfigError, formatIssues, parseYamlText } from "../../lib/config/index.ts";
import { FILTERS } from "../filters.ts";
import { type GatewayConfig, gatewaySchema } from "./schema.ts";
import type { FilterFactory } from "./types.ts";

export interface RouteFilterSpec {
  factory: FilterFactory<unknown, unknown>;
  config: unknown;
}

/** A validated gateway config: the core settings, each feature's global section and each route's filters. */
export interface LoadedConfig {
  core: GatewayConfig;
  globals: Map<string, unknown>;
  routeFilters: RouteFilterSpec[][];
  file: string | undefined;
}

const CORE_KEYS = new Set(Object.keys(gatewaySchema.shape));

function factoryByName(name: string): FilterFactory<unknown, unknown> | undefined {
  return FILTERS.find((f) => f.name === name) as FilterFactory<unknown, unknown> | undefined;
}

function check(schema: z.ZodType, value: unknown, path: (string | number)[], problems: string[]): unknown {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  for (const line of formatIssues(r.error.issues.map((i) => ({ ...i, path: [...path, ...i.path] }))))
    problems.push(line);
  return undefined;
}

/**
 * Validates everything a gateway config holds, reporting every problem with its key path at once:
 * the core schema, then feature sections (`auth:`, `cache:`…) and each route's `filters:` entries.
 */
export function validateGatewayConfig(raw: unknown, file?: string): LoadedConfig {
  const core = (() => {
    const r = gatewaySchema.safeParse(raw);
    if (!r.success) throw new ConfigError(file, formatIssues(r.error.issues));
    return r.data;
  })();
  const problems: string[] = [];
  const globals = new Map<string, unknown>();
  const rawObj = raw as Record<string, unknown>;
  for (const key of Object.keys(rawObj)) {
    if (CORE_KEYS.has(key)) continue;
    const factory = factoryByName(key);
    if (!factory?.globalSchema) {
      problems.push(`${key}: unknown key (not a core setting nor a feature section)`);
      continue;
    }
    globals.set(key, check(factory.globalSchema, rawObj[key], [key], problems));
  }
  // Features with a global section get their defaults even when the file omits it.
  for (const f of FILTERS) {
    if (f.globalSchema && !globals.has(f.name)) {
      const used = core.routes.some((r) => r.filters.some((e) => f.name in e));
      if (used) globals.set(f.name, check(f.globalSchema, {}, [f.name], problems));
    }
  }

  const routeFilters: RouteFilterSpec[][] = core.routes.map((route, ri) => {
    if (!core.services[route.service]) {
      problems.push(`routes[${ri}].service: no service named "${route.service}" in services`);
    }
    return route.filters.flatMap((entry, fi) => {
      const names = Object.keys(entry);
      if (names.length !== 1) {
        problems.push(
          `routes[${ri}].filters[${fi}]: expected one filter name as the only key, got ${names.length}`,
        );
        return [];
      }
      const name = names[0]!;
      const factory = factoryByName(name);
      if (!factory) {
        problems.push(
          `routes[${ri}].filters[${fi}]: unknown filter "${name}" (known: ${FILTERS.map((f) => f.name).join(", ")})`,
        );
        return [];
      }
      const config = check(factory.schema, entry[name] ?? {}, ["routes", ri, "filters", fi, name], problems);
      return [{ factory, config }];
    });
  });
  const names = new Set<string>();
  core.routes.forEach((r, i) => {
    if (r.name && names.has(r.name)) problems.push(`routes[${i}].name: duplicate route name "${r.name}"`);
    if (r.name) names.add(r.name);
  });
  if (problems.length > 0) throw new ConfigError(file, problems);
  return { core, globals, routeFilters, file };
}

export function parseGatewayConfig(text: string, file?: string): LoadedConfig {
  return validateGatewayConfig(parseYamlText(text, file), file);
}

export function loadGatewayConfig(file: string): LoadedConfig {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new ConfigError(file, [`(file): cannot read: ${(err as Error).message}`]);
  }
  return parseGatewayConfig(text, file);
}
