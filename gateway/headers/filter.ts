import { z } from "zod";
import { isHopByHop } from "../core/headers.ts";
import type { Filter, FilterFactory, HeaderMap } from "../core/types.ts";

const FIELD_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

const name = z
  .string()
  .regex(FIELD_NAME, "not a valid header name")
  .transform((s) => s.toLowerCase())
  .refine(
    (s) => !isHopByHop(s) && s !== "host" && s !== "content-length",
    "hop-by-hop and framing headers cannot be set",
  );
const value = z.string().regex(FIELD_VALUE, "header values cannot contain control characters");

const rules = z
  .strictObject({
    /** Replace (or create) these headers. */
    set: z.record(name, value).default({}),
    /** Append to these headers (comma-joined with any existing value). */
    add: z.record(name, value).default({}),
    /** Remove these headers. */
    remove: z.array(name).default([]),
  })
  .prefault({});

export const headersSchema = z.strictObject({
  request: rules,
  response: rules,
});
export type HeadersFilterConfig = z.output<typeof headersSchema>;
type Rules = z.output<typeof rules>;

/** Applies one rule set in place: remove, then set, then add (so add can extend what set wrote). */
export function applyHeaderRules(headers: HeaderMap, r: Rules): void {
  for (const n of r.remove) delete headers[n];
  for (const n in r.set) headers[n] = r.set[n];
  for (const n in r.add) {
    const cur = headers[n];
    headers[n] = cur === undefined ? r.add[n] : `${Array.isArray(cur) ? cur.join(", ") : cur}, ${r.add[n]}`;
  }
}

function isEmpty(r: Rules): boolean {
  return r.remove.length === 0 && Object.keys(r.set).length === 0 && Object.keys(r.add).length === 0;
}

/** Per-route header rules for requests to the upstream and responses to the client. */
export const headersFilter: FilterFactory<HeadersFilterConfig> = {
  name: "headers",
  schema: headersSchema,
  create(config): Filter {
    const reqRules = isEmpty(config.request) ? undefined : config.request;
    const resRules = isEmpty(config.response) ? undefined : config.response;
    return {
      name: "headers",
      wrap(next) {
        return async (ex) => {
          if (reqRules) applyHeaderRules(ex.request.headers, reqRules);
          const res = await next(ex);
          if (resRules) applyHeaderRules(res.headers, resRules);
          return res;
        };
      },
    };
  },
};
