/**
 * Lists every key a zod 4 config schema accepts, with its type, default and description, so the
 * configuration reference (docs/configuration.md) can be checked against the schemas themselves.
 * Key paths use the user's notation: `routes[].timeouts.connect`, `services.*.endpoints.*[].url`
 * (`[]` = any list item, `*` = any map key).
 */
import { z } from "zod";

export interface ConfigKey {
  /** e.g. `routes[].timeouts.connect` */
  path: string;
  /** e.g. `duration`, `integer 1..5`, `"a" | "b"`, `list of string`, `object` */
  type: string;
  /** True when the key must be given: no default and not optional. */
  required: boolean;
  hasDefault: boolean;
  /** The default as the schema holds it (a `.default()` value is an output, a `.prefault()` one an input). */
  default?: unknown;
  /** From `.describe()` / `.meta({ description })`, outermost first. */
  description?: string;
}

// zod's internal definition, read structurally: only the fields the walk needs.
interface Def {
  type: string;
  innerType?: z.ZodType;
  defaultValue?: unknown;
  shape?: Record<string, z.ZodType>;
  element?: z.ZodType;
  keyType?: z.ZodType;
  valueType?: z.ZodType;
  options?: z.ZodType[];
  items?: z.ZodType[];
  left?: z.ZodType;
  right?: z.ZodType;
  in?: z.ZodType;
  out?: z.ZodType;
  entries?: Record<string, string | number>;
  values?: unknown[];
  format?: string;
  getter?: () => z.ZodType;
}

const defOf = (s: z.ZodType): Def => (s as unknown as { _zod: { def: Def } })._zod.def;

interface Unwrapped {
  core: z.ZodType;
  optional: boolean;
  nullable: boolean;
  hasDefault: boolean;
  default?: unknown;
  description?: string;
}

/** Peels optional/default/prefault/nullable/readonly/catch/lazy/preprocess wrappers off a schema. */
function unwrap(schema: z.ZodType): Unwrapped {
  const u: Unwrapped = { core: schema, optional: false, nullable: false, hasDefault: false };
  let s = schema;
  for (let depth = 0; depth < 50; depth++) {
    u.description ??= z.globalRegistry.get(s)?.description;
    const def = defOf(s);
    if (def.type === "optional") u.optional = true;
    else if (def.type === "nullable") u.nullable = true;
    else if (def.type === "default" || def.type === "prefault") {
      if (!u.hasDefault) {
        u.hasDefault = true;
        u.default = def.defaultValue;
      }
    } else if (def.type === "lazy" && def.getter) {
      s = def.getter();
      continue;
    } else if (def.type === "pipe" && def.in && def.out) {
      // z.preprocess(fn, schema): the user writes what `schema` accepts.
      if (defOf(def.in).type === "transform") {
        s = def.out;
        continue;
      }
      // schema.transform(fn) (duration(), byteSize()…) is a leaf; typeOf names it.
      if (defOf(def.out).type === "transform") break;
      s = def.in;
      continue;
    } else if (!["readonly", "catch", "nonoptional"].includes(def.type) || !def.innerType) break;
    s = def.innerType!;
  }
  u.core = s;
  return u;
}

/** A transform's name, found by feeding it a value no parser accepts and reading its complaint. */
function transformName(pipe: z.ZodType): string | undefined {
  const parsed = pipe.safeParse("\u0000?");
  const message = parsed.success ? undefined : parsed.error.issues[0]?.message;
  if (!message) return undefined;
  if (/duration/i.test(message)) return "duration";
  if (/size/i.test(message)) return "byte size";
  return undefined;
}

function range(min: number | null | undefined, max: number | null | undefined): string {
  const lo = min !== null && min !== undefined && Number.isFinite(min) ? min : undefined;
  const hi = max !== null && max !== undefined && Number.isFinite(max) ? max : undefined;
  if (lo !== undefined && hi !== undefined) return ` ${lo}..${hi}`;
  if (lo !== undefined) return ` ≥ ${lo}`;
  if (hi !== undefined) return ` ≤ ${hi}`;
  return "";
}

/** A short human name for what a (possibly wrapped) schema accepts. */
export function typeOf(schema: z.ZodType): string {
  const u = unwrap(schema);
  const t = coreType(u.core);
  return u.nullable ? `${t} | null` : t;
}

function coreType(s: z.ZodType): string {
  const def = defOf(s);
  switch (def.type) {
    case "string":
      return def.format === "url" ? "URL" : def.format ? `string (${def.format})` : "string";
    case "number": {
      const n = s as z.ZodNumber;
      // A safe-integer check reports ±2^53 bounds, which say nothing to a reader.
      const min = n.minValue === Number.MIN_SAFE_INTEGER ? null : n.minValue;
      const max = n.maxValue === Number.MAX_SAFE_INTEGER ? null : n.maxValue;
      return (n.isInt ? "integer" : "number") + range(min, max);
    }
    case "boolean":
    case "bigint":
    case "date":
    case "null":
      return def.type;
    case "any":
    case "unknown":
      return "any";
    case "enum":
      return Object.values(def.entries ?? {})
        .map((v) => JSON.stringify(v))
        .join(" | ");
    case "literal":
      return (def.values ?? []).map((v) => JSON.stringify(v)).join(" | ");
    case "array":
      return `list of ${typeOf(def.element!)}`;
    case "record":
      return `map of ${typeOf(def.valueType!)}`;
    case "tuple":
      return `[${(def.items ?? []).map(typeOf).join(", ")}]`;
    case "object":
    case "intersection":
      return "object";
    case "union":
      return [...new Set((def.options ?? []).map(typeOf))].join(" | ");
    case "pipe":
      return transformName(s) ?? typeOf(def.in!);
    default:
      return def.type;
  }
}

function entry(path: string, schema: z.ZodType): ConfigKey {
  const u = unwrap(schema);
  const key: ConfigKey = {
    path,
    type: typeOf(schema),
    required: !u.optional && !u.hasDefault,
    hasDefault: u.hasDefault,
  };
  if (u.hasDefault) key.default = u.default;
  if (u.description) key.description = u.description;
  return key;
}

/** Keys below `schema`, whose own path is `prefix`; list items add `[]`, map values `.*`. */
function children(
  schema: z.ZodType,
  prefix: string,
  out: Map<string, ConfigKey>,
  seen: Set<z.ZodType>,
): void {
  const { core } = unwrap(schema);
  if (seen.has(core)) return; // recursive (lazy) schemas: each level once
  seen.add(core);
  const def = defOf(core);
  const join = (key: string) => (prefix ? `${prefix}.${key}` : key);
  if (def.type === "object") {
    for (const [key, child] of Object.entries(def.shape ?? {})) {
      const e = entry(join(key), child);
      const prior = out.get(e.path);
      if (!prior) out.set(e.path, e);
      else if (!prior.type.split(" | ").includes(e.type)) prior.type = `${prior.type} | ${e.type}`;
      children(child, e.path, out, seen);
    }
  } else if (def.type === "array") children(def.element!, `${prefix}[]`, out, seen);
  else if (def.type === "record") children(def.valueType!, join("*"), out, seen);
  else if (def.type === "union") for (const o of def.options ?? []) children(o, prefix, out, seen);
  else if (def.type === "intersection") {
    children(def.left!, prefix, out, seen);
    children(def.right!, prefix, out, seen);
  } else if (def.type === "tuple") {
    for (const [i, item] of (def.items ?? []).entries()) children(item, `${prefix}[${i}]`, out, seen);
  }
  seen.delete(core);
}

/**
 * Every key path `schema` accepts, depth first in declaration order. With `prefix`, paths start
 * there (`prefix.key`) and the prefix itself is listed first, described by the schema's root.
 */
export function describeSchema(schema: z.ZodType, prefix = ""): ConfigKey[] {
  const out = new Map<string, ConfigKey>();
  if (prefix) out.set(prefix, entry(prefix, schema));
  children(schema, prefix, out, new Set());
  return [...out.values()];
}

/** Milliseconds as the largest whole unit: 30000 → "30s", 250 → "250ms". */
function formatMs(ms: number): string {
  if (ms === 0) return "0";
  for (const [unit, size] of [
    ["d", 86_400_000],
    ["h", 3_600_000],
    ["m", 60_000],
    ["s", 1000],
  ] as const) {
    if (ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

/** Bytes as the largest whole binary unit: 16777216 → "16MiB". */
function formatBytes(bytes: number): string {
  for (const [unit, size] of [
    ["GiB", 1024 ** 3],
    ["MiB", 1024 ** 2],
    ["KiB", 1024],
  ] as const) {
    if (bytes > 0 && bytes % size === 0) return `${bytes / size}${unit}`;
  }
  return String(bytes);
}

/** A key's default as it would be written in YAML ("" when it has none). */
export function formatDefault(key: ConfigKey): string {
  if (!key.hasDefault) return "";
  const v = key.default;
  if (key.type === "duration" && typeof v === "number") return formatMs(v);
  if (key.type === "byte size" && typeof v === "number") return formatBytes(v);
  if (typeof v === "string") return v === "" ? '""' : v;
  return JSON.stringify(v) ?? String(v);
}
