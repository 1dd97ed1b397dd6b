/**
 * Query parameters whose values are credentials: OAuth tokens and codes, API keys, signatures,
 * passwords, session ids. Matched on the parameter name, case-insensitively.
 */
const SECRET_PARAM =
  /([?&;](?:[^=&;#]*(?:token|secret|password|passwd|pwd|api[_-]?key|apikey|auth|session|signature|sig|code|credential)[^=&;#]*)=)[^&;#]*/gi;

/**
 * The request target as it may appear in a log line: the path as received, with the values of
 * credential-like query parameters replaced. Targets without a query are returned unchanged (no copy).
 */
export function redactTarget(target: string): string {
  if (target.indexOf("?") === -1) return target;
  return target.replace(SECRET_PARAM, "$1[redacted]");
}

/** Field names never written as they are, whatever a filter puts in `ex.logFields`. */
const SECRET_FIELD = /token|secret|password|passwd|authorization|cookie|api[_-]?key|credential|signature/i;

/**
 * Fields a filter added to the access log line, screened: a value under a credential-like name is
 * replaced. Returns the same object when nothing matches (the usual case: no copy).
 */
export function screenLogFields(fields: Record<string, unknown>): Record<string, unknown> {
  let out: Record<string, unknown> | undefined;
  for (const k in fields) {
    if (SECRET_FIELD.test(k)) {
      out ??= { ...fields };
      out[k] = "[redacted]";
    }
  }
  return out ?? fields;
}
