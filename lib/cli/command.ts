/** One CLI subcommand. Each area (gateway, agent, auth, cache, deploy) exports a list of these. */
export interface Command {
  /** Words after `edgeway`, e.g. ["agent", "db", "advise"]. */
  path: string[];
  summary: string;
  usage?: string;
  /** Runs with the remaining argv; resolves to the process exit code. */
  run(argv: string[]): Promise<number>;
}

/** A usage mistake: printed without a stack trace, exit code 2. */
export class UsageError extends Error {
  override name = "UsageError";
}
