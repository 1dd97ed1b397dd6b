import { parseArgs } from "node:util";
import { type Command, UsageError } from "../../lib/cli/command.ts";

const USAGE = "(--tag TAG | --url URL | --prefix PREFIX) [--soft] [--admin URL] [--token TOKEN]";

/** The JSON body for POST /admin/cache/purge from CLI flags (pure, tested). */
export function purgeBody(argv: string[]): {
  admin: string;
  token: string | undefined;
  body: Record<string, unknown>;
} {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        tag: { type: "string" },
        url: { type: "string" },
        prefix: { type: "string" },
        soft: { type: "boolean", default: false },
        admin: { type: "string" },
        token: { type: "string" },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw new UsageError(`${(err as Error).message}\nusage: edgeway cache purge ${USAGE}`);
  }
  const given = (["tag", "url", "prefix"] as const).filter((k) => values[k] !== undefined);
  if (given.length !== 1)
    throw new UsageError(`give exactly one of --tag, --url or --prefix\nusage: edgeway cache purge ${USAGE}`);
  const admin = String(values.admin ?? process.env.EDGEWAY_ADMIN_URL ?? "http://127.0.0.1:9090").replace(
    /\/$/,
    "",
  );
  if (!/^https?:\/\//.test(admin)) throw new UsageError(`--admin must be an http(s) URL, got "${admin}"`);
  const token = (values.token as string | undefined) ?? process.env.EDGEWAY_ADMIN_TOKEN;
  const k = given[0]!;
  return { admin, token, body: { [k]: values[k], soft: values.soft === true } };
}

export const commands: Command[] = [
  {
    path: ["cache", "purge"],
    usage: USAGE,
    summary:
      "Purge cached responses by tag (Surrogate-Key/Cache-Tag), exact URL or prefix through a running gateway's admin API (all instances via Redis). --soft marks them stale.",
    async run(argv) {
      const { admin, token, body } = purgeBody(argv);
      let res: Response;
      try {
        res = await fetch(`${admin}/admin/cache/purge`, {
          method: "POST",
          headers: {
            "content-type": "application/json",
            ...(token ? { authorization: `Bearer ${token}` } : {}),
          },
          body: JSON.stringify(body),
          signal: AbortSignal.timeout(30_000),
        });
      } catch (err) {
        process.stderr.write(
          `edgeway: cannot reach the gateway admin API at ${admin}: ${(err as Error).message}\n`,
        );
        return 1;
      }
      const text = await res.text();
      if (!res.ok) {
        process.stderr.write(`edgeway: purge failed (${res.status}): ${text}\n`);
        return 1;
      }
      process.stdout.write(`${text}\n`);
      return 0;
    },
  },
];
