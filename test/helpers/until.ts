/**
 * Polls `read` until `ok` accepts its value or `ms` pass, and returns the last value read, so the caller's
 * assertion shows what was seen when it gave up.
 */
export async function until<T>(
  read: () => Promise<T>,
  ok: (v: T) => boolean,
  ms: number,
  everyMs = 20,
): Promise<T> {
  const deadline = Date.now() + ms;
  let v = await read();
  while (!ok(v) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, everyMs));
    v = await read();
  }
  return v;
}
