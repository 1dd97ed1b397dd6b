import t from "tap";
import { z } from "zod";
import { type ConfigKey, describeSchema, formatDefault, typeOf } from "../../lib/config/describe.ts";
import { byteSize, duration } from "../../lib/config/index.ts";

const byPath = (keys: ConfigKey[]) => Object.fromEntries(keys.map((k) => [k.path, k]));

t.test("objects, wrappers, defaults and descriptions", async (t) => {
  const schema = z.strictObject({
    server: z
      .strictObject({
        port: z.number().int().min(1).max(65535).describe("TCP port"),
        host: z.string().default("127.0.0.1"),
        name: z.string().optional(),
      })
      .prefault({ port: 80 }),
    mode: z.enum(["a", "b"]).meta({ description: "which mode" }).default("a"),
    workers: z.union([z.number().int().min(1), z.literal("auto")]).default(1),
    nothing: z.string().nullable().optional(),
  });
  const keys = describeSchema(schema);
  t.same(
    keys.map((k) => k.path),
    ["server", "server.port", "server.host", "server.name", "mode", "workers", "nothing"],
    "depth first, declaration order",
  );
  const k = byPath(keys);
  t.match(k.server, { type: "object", required: false, hasDefault: true, default: { port: 80 } });
  t.match(k["server.port"], {
    type: "integer 1..65535",
    required: true,
    hasDefault: false,
    description: "TCP port",
  });
  t.match(k["server.host"], { type: "string", required: false, default: "127.0.0.1" });
  t.match(k["server.name"], { required: false, hasDefault: false });
  t.equal(k["server.name"]!.description, undefined);
  t.match(k.mode, { type: '"a" | "b"', default: "a", description: "which mode" });
  t.match(k.workers, { type: 'integer ≥ 1 | "auto"', default: 1 });
  t.match(k.nothing, { type: "string | null", required: false });
});

t.test("lists, maps, unions of objects, tuples, lazy and preprocess", async (t) => {
  const node: z.ZodType = z.strictObject({
    name: z.string(),
    children: z.array(z.lazy(() => node)).optional(),
  });
  const schema = z.strictObject({
    routes: z.array(z.strictObject({ path: z.string(), tags: z.array(z.string()).default([]) })),
    services: z.record(
      z.string(),
      z.strictObject({ endpoints: z.record(z.string(), z.array(z.strictObject({ url: z.url() }))) }),
    ),
    storage: z.discriminatedUnion("type", [
      z.strictObject({ type: z.literal("fs"), path: z.string() }),
      z.strictObject({ type: z.literal("s3"), bucket: z.string() }),
    ]),
    status: z.tuple([z.number().int(), z.number().int()]).default([200, 399]),
    tree: node.optional(),
    section: z.preprocess((v) => v ?? {}, z.strictObject({ on: z.boolean().default(true) })),
  });
  const k = byPath(describeSchema(schema));
  t.same(Object.keys(k), [
    "routes",
    "routes[].path",
    "routes[].tags",
    "services",
    "services.*.endpoints",
    "services.*.endpoints.*[].url",
    "storage",
    "storage.type",
    "storage.path",
    "storage.bucket",
    "status",
    "tree",
    "tree.name",
    "tree.children",
    "section",
    "section.on",
  ]);
  t.equal(k.routes!.type, "list of object");
  t.equal(k["routes[].tags"]!.type, "list of string");
  t.equal(k["services.*.endpoints"]!.type, "map of list of object");
  t.equal(k["services.*.endpoints.*[].url"]!.type, "URL");
  t.equal(k["storage.type"]!.type, '"fs" | "s3"', "a key in several union options lists each type");
  t.equal(k.status!.type, "[integer, integer]");
  t.equal(formatDefault(k.status!), "[200,399]");
  t.equal(k["tree.children"]!.type, "list of object", "recursion stops at the repeated schema");
});

t.test("units: duration() and byteSize() are named, defaults written as in YAML", async (t) => {
  const schema = z.strictObject({
    timeout: duration({ min: 1 }).default(30_000),
    grace: duration().prefault("30s"),
    odd: duration().default(1500),
    none: duration().default(0),
    body: byteSize().prefault("10MiB"),
    part: byteSize().default(16 * 1024 * 1024),
    listen: z.string().transform((s) => s.split(":")),
    empty: z.string().default(""),
  });
  const k = byPath(describeSchema(schema));
  t.equal(k.timeout!.type, "duration");
  t.equal(k.body!.type, "byte size");
  t.equal(k.listen!.type, "string", "other transforms show what they accept");
  t.equal(formatDefault(k.timeout!), "30s");
  t.equal(formatDefault(k.grace!), "30s");
  t.equal(formatDefault(k.odd!), "1500ms");
  t.equal(formatDefault(k.none!), "0");
  t.equal(formatDefault(k.body!), "10MiB");
  t.equal(formatDefault(k.part!), "16MiB");
  t.equal(formatDefault(k.empty!), '""');
  t.equal(formatDefault(k.listen!), "");
});

t.test("a prefix names the root and starts every path", async (t) => {
  const keys = describeSchema(
    z.strictObject({ mode: z.string() }).describe("the feature"),
    "routes[].filters[].x",
  );
  t.same(
    keys.map((k) => [k.path, k.description]),
    [
      ["routes[].filters[].x", "the feature"],
      ["routes[].filters[].x.mode", undefined],
    ],
  );
  t.equal(typeOf(z.array(z.enum(["a"])).optional()), 'list of "a"');
});
