/**
 * A retry budget (like Finagle's and Envoy's): every request deposits `ratio` of a token, time deposits
 * `minPerSecond`, and each retry withdraws one. A failing upstream can add at most `ratio` extra load.
 */
const UNIT = 1000; // tokens are kept in thousandths so 0.2·10 makes exactly 2

export class RetryBudget {
  private tokens: number;
  private last: number;
  private readonly cap: number;
  private readonly ratio: number;
  private readonly minPerSecond: number;
  private readonly now: () => number;

  constructor(ratio: number, minPerSecond: number, now: () => number = Date.now) {
    this.ratio = Math.round(ratio * UNIT);
    this.minPerSecond = minPerSecond * UNIT;
    this.now = now;
    // Enough headroom for a one-second burst at the floor rate plus the ratio's share of 100 requests.
    this.cap = Math.max(UNIT, Math.round((minPerSecond + ratio * 100) * UNIT));
    this.tokens = this.cap;
    this.last = now();
  }

  private refill(): void {
    const t = this.now();
    if (t > this.last) {
      this.tokens = Math.min(
        this.cap,
        this.tokens + Math.floor(((t - this.last) * this.minPerSecond) / 1000),
      );
      this.last = t;
    }
  }

  /** Called once per original request. */
  deposit(): void {
    this.tokens = Math.min(this.cap, this.tokens + this.ratio);
  }

  /** True (and a token spent) when a retry is allowed now. */
  tryWithdraw(): boolean {
    this.refill();
    if (this.tokens >= UNIT) {
      this.tokens -= UNIT;
      return true;
    }
    return false;
  }

  get available(): number {
    this.refill();
    return this.tokens / UNIT;
  }
}
