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
