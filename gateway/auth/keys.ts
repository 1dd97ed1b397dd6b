import { readFile, stat } from "node:fs/promises";
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  errors,
  type JSONWebKeySet,
  type JWTVerifyGetKey,
} from "jose";
import type { Logger } from "pino";
import type { AuthGlobalConfig } from "./config.ts";
import { TokenRejected } from "./policy.ts";

type JwksConfig = AuthGlobalConfig["jwks"];

/** What a key set load looks like to the KeySource: the jose resolver and the set it was built from. */
interface Loaded {
  resolve: JWTVerifyGetKey;
  jwks: JSONWebKeySet;
}

/**
 * The issuer's verification keys. jose imports each key once per set and selects by kid/alg; this
 * wrapper adds what the gateway needs around it:
 *  - one loader call at a time, and at most one every `cooldown` when triggered by an unknown kid or a
 *    failed load (random kids cannot make the gateway hammer the IdP);
 *  - a background refresh every `refreshInterval` (keys roll without a restart);
 *  - the last good set is kept when a refresh fails (the IdP may be down).
 */
export class KeySource {
  private current: Loaded | undefined;
  private pending: Promise<boolean> | undefined;
  private lastTriggered = Number.NEGATIVE_INFINITY;
  private timer: NodeJS.Timeout | undefined;
  private readonly cooldown: number;
  private readonly load: () => Promise<Loaded>;
  private readonly logger: Logger;
  /** Successful and failed loads, for tests and the admin status. */
  readonly stats = { loads: 0, failures: 0, lastLoadedAt: 0 };
  readonly getKey: JWTVerifyGetKey;

  constructor(cfg: JwksConfig, logger: Logger) {
    this.cooldown = cfg.cooldown;
    this.logger = logger;
    this.load = cfg.url ? remoteLoader(new URL(cfg.url), cfg.timeout) : fileLoader(cfg.file!);
    this.getKey = (header, token) => this.resolve(header, token);
    this.timer = setInterval(() => void this.refresh(true), cfg.refreshInterval);
    this.timer.unref();
    if (cfg.file) this.watchFile(cfg.file, Math.min(cfg.refreshInterval, 2000));
    void this.refresh(true);
  }

  /** Resolves once the first load has finished (successfully or not). */
  async ready(): Promise<boolean> {
    if (this.pending) await this.pending;
    return this.current !== undefined;
  }

  get jwks(): JSONWebKeySet | undefined {
    return this.current?.jwks;
  }

  private async resolve(header: Parameters<JWTVerifyGetKey>[0], token: Parameters<JWTVerifyGetKey>[1]) {
    if (!this.current) {
      await this.refresh(false);
      if (!this.current) throw new TokenRejected("keys_unavailable", "the issuer's keys are not available");
    }
    try {
      return await this.current.resolve(header, token);
    } catch (err) {
      if (!(err instanceof errors.JWKSNoMatchingKey)) throw err;
      // Unknown kid: maybe the IdP rolled its keys. Refetch at most once per cooldown.
      if (!(await this.refresh(false))) throw err;
      return await this.current.resolve(header, token);
    }
  }

  /**
   * Loads the set again. `scheduled` loads ignore the cooldown (they are already periodic); loads
   * triggered by requests respect it. Resolves true when a new set was loaded by this call.
   */
  refresh(scheduled: boolean): Promise<boolean> {
    if (this.pending) return this.pending;
    const now = Date.now();
    if (!scheduled) {
      // Request-triggered loads (unknown kid, no set yet) are their own budget: one per cooldown.
      if (now - this.lastTriggered < this.cooldown) return Promise.resolve(false);
      this.lastTriggered = now;
    }
    this.pending = this.load()
      .then((loaded) => {
        // An unchanged set keeps its resolver, so its keys stay imported (once, not once per refresh).
        if (!this.current || JSON.stringify(this.current.jwks) !== JSON.stringify(loaded.jwks))
          this.current = loaded;
        this.stats.loads++;
        this.stats.lastLoadedAt = Date.now();
        return true;
      })
      .catch((err: unknown) => {
        this.stats.failures++;
        this.logger.warn(
          { err: (err as Error)?.message, keptPrevious: this.current !== undefined },
          "loading the JWKS failed",
        );
        return false;
      })
      .finally(() => {
        this.pending = undefined;
      });
    return this.pending;
  }

  private watchFile(file: string, every: number): void {
    let lastMtime = 0;
    const poll = setInterval(async () => {
      try {
        const m = (await stat(file)).mtimeMs;
        if (lastMtime !== 0 && m !== lastMtime) void this.refresh(true);
        lastMtime = m;
      } catch {
        // Missing file: keep the last good set; the periodic refresh logs the failure.
      }
    }, every);
    poll.unref();
    this.closers.push(() => clearInterval(poll));
  }

  private readonly closers: (() => void)[] = [];

  close(): void {
    clearInterval(this.timer);
    for (const c of this.closers) c();
  }
}

function isJwkSet(v: unknown): v is JSONWebKeySet {
  return (
    typeof v === "object" &&
    v !== null &&
    Array.isArray((v as JSONWebKeySet).keys) &&
    (v as JSONWebKeySet).keys.every((k) => typeof k === "object" && k !== null)
  );
}

function fileLoader(file: string): () => Promise<Loaded> {
  return async () => {
    const json: unknown = JSON.parse(await readFile(file, "utf8"));
    if (!isJwkSet(json)) throw new Error(`${file} is not a JWK Set`);
    // Private members would mean someone pointed the gateway at a private key file: refuse it.
    if (json.keys.some((k) => "d" in k)) throw new Error(`${file} contains private keys`);
    return { resolve: createLocalJWKSet(json), jwks: json };
  };
}

/**
 * jose's remote set, driven by us: it never reloads on its own (infinite cache age and cooldown), so a
 * stale cache never turns an IdP outage into rejections; KeySource decides when to call `reload()`.
 */
function remoteLoader(url: URL, timeout: number): () => Promise<Loaded> {
  const remote = createRemoteJWKSet(url, {
    timeoutDuration: timeout,
    cacheMaxAge: Number.POSITIVE_INFINITY,
    cooldownDuration: Number.POSITIVE_INFINITY,
  });
  return async () => {
    await remote.reload();
    const jwks = remote.jwks();
    if (!jwks) throw new Error("the JWKS endpoint returned no keys");
    if (jwks.keys.some((k) => "d" in k)) throw new Error("the JWKS endpoint returned private keys");
    return { resolve: createLocalJWKSet(jwks), jwks };
  };
}
