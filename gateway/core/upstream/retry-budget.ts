/**
 * A retry budget (like Finagle's and Envoy's): every request deposits `ratio` of a token, time deposits
 * `minPerSecond`, and each retry withdraws one. A failing upstream can add at most `ratio` extra load.
 */
export class RetryBudget {
  private tokens: number;
  private last: number;
  private readonly cap: number;
  private readonly ratio: number;
  private readonly minPerSecond: number;
  private readonly now: () => number;

  constructor(ratio: number, minPerSecond: number, now: () => number = Date.now) {
    this.ratio = ratio;
    this.minPerSecond = minPerSecond;
    this.now = now;
    // Enough headroom for a one-second burst at the floor rate plus the ratio's share of 100 requests.
    this.cap = Math.max(1, minPerSecond + ratio * 100);
    this.tokens = this.cap;
    this.last = now();
  }

  private refill(): void {
    const t = this.now();
    if (t > this.last) {
      this.tokens = Math.min(this.cap, this.tokens + ((t - this.last) / 1000) * this.minPerSecond);
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
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return true;
    }
    return false;
  }

  get available(): number {
    this.refill();
    return this.tokens;
  }
}
