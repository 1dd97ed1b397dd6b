import { readFileSync } from "node:fs";
import type { z } from "zod";
import { ConfigError, formatIssues, parseYamlText } from "../../lib/config/index.ts";
import { FILTERS } from "../filters.ts";
import { type GatewayConfig, gatewaySchema } from "./schema.ts";
import { readTlsMaterial, readUpstreamTls, type TlsError } from "./tls.ts";
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

/** Loads the factories of every feature the raw config names (route filters and top-level sections). */
async function loadFactories(raw: unknown): Promise<Map<string, FilterFactory<unknown, unknown>>> {
  const names = new Set<string>();
  if (raw && typeof raw === "object") {
    for (const key of Object.keys(raw)) if (!CORE_KEYS.has(key) && FILTERS[key]) names.add(key);
    const routes = (raw as { routes?: unknown }).routes;
    if (Array.isArray(routes)) {
      for (const r of routes) {
        const filters = (r as { filters?: unknown })?.filters;
        if (!Array.isArray(filters)) continue;
        for (const f of filters) {
          if (f && typeof f === "object") for (const k of Object.keys(f)) if (FILTERS[k]) names.add(k);
        }
      }
    }
  }
  const out = new Map<string, FilterFactory<unknown, unknown>>();
  for (const name of names) out.set(name, (await FILTERS[name]!()) as FilterFactory<unknown, unknown>);
  return out;
}

function check(schema: z.ZodType, value: unknown, path: (string | number)[], problems: string[]): unknown {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  for (const line of formatIssues(r.error.issues.map((i) => ({ ...i, path: [...path, ...i.path] }))))
    problems.push(line);
  return undefined;
}

export interface ValidateOptions {
  /**
   * Also read the files the config names that must load at start (the TLS pair). Off for a config
   * checked away from where it runs (a Helm render: the files are in the pod's Secret).
   */
  files?: boolean;
}

/**
 * Validates everything a gateway config holds, reporting every problem with its key path at once:
 * the core schema, then feature sections (`auth:`, `cache:`…) and each route's `filters:` entries.
 */
export async function validateGatewayConfig(
  raw: unknown,
  file?: string,
  opts: ValidateOptions = {},
): Promise<LoadedConfig> {
  const factories = await loadFactories(raw);
  const factoryByName = (name: string) => factories.get(name);
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
  for (const f of factories.values()) {
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
          `routes[${ri}].filters[${fi}]: unknown filter "${name}" (known: ${Object.keys(FILTERS).join(", ")})`,
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
  if (opts.files !== false) {
    const tlsProblems = (read: () => unknown) => {
      try {
        read();
      } catch (err) {
        problems.push(...((err as TlsError).problems ?? [(err as Error).message]));
      }
    };
    const tls = core.server.tls;
    if (tls) tlsProblems(() => readTlsMaterial(tls));
    for (const [name, svc] of Object.entries(core.services)) {
      const upstream = svc.tls;
      if (upstream) tlsProblems(() => readUpstreamTls(upstream, `services.${name}.tls`));
    }
  }
  if (problems.length > 0) throw new ConfigError(file, problems);
  return { core, globals, routeFilters, file };
}

export function parseGatewayConfig(
  text: string,
  file?: string,
  opts: ValidateOptions = {},
): Promise<LoadedConfig> {
  return validateGatewayConfig(parseYamlText(text, file), file, opts);
}

export async function loadGatewayConfig(file: string): Promise<LoadedConfig> {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new ConfigError(file, [`(file): cannot read: ${(err as Error).message}`]);
  }
  return parseGatewayConfig(text, file);
}
