/** A bounded work queue: `concurrency` jobs run, `capacity` wait, and anything more is refused at once. */
export class QueueFullError extends Error {
  override name = "QueueFullError";
}

interface Waiter {
  start: () => void;
  signal: AbortSignal | undefined;
  onAbort: () => void;
}

export class BoundedQueue {
  private running = 0;
  private readonly waiting: Waiter[] = [];
  readonly concurrency: number;
  readonly capacity: number;
  constructor(concurrency: number, capacity: number) {
    this.concurrency = concurrency;
    this.capacity = capacity;
  }
  /** Jobs running plus jobs waiting. */
  get depth(): number {
    return this.running + this.waiting.length;
  }
  get active(): number {
    return this.running;
  }

  /** Whether a job submitted now would be refused. */
  get full(): boolean {
    return this.running >= this.concurrency && this.waiting.length >= this.capacity;
  }

  /**
   * Runs `job` when a slot frees. Throws QueueFullError when all slots and queue places are taken;
   * an abort while waiting removes the job (nothing ran). `background` jobs only take a free slot.
   */
  async run<T>(job: () => Promise<T>, opts: { signal?: AbortSignal; background?: boolean } = {}): Promise<T> {
    if (this.running >= this.concurrency) {
      if (opts.background || this.waiting.length >= this.capacity) throw new QueueFullError("queue full");
      await new Promise<void>((resolve, reject) => {
        const w: Waiter = {
          start: () => {
            opts.signal?.removeEventListener("abort", w.onAbort);
            resolve();
          },
          signal: opts.signal,
          onAbort: () => {
            const i = this.waiting.indexOf(w);
            if (i !== -1) this.waiting.splice(i, 1);
            reject(opts.signal?.reason ?? new Error("aborted"));
          },
        };
        opts.signal?.addEventListener("abort", w.onAbort, { once: true });
        this.waiting.push(w);
      });
    } else {
      this.running++;
    }
    try {
      return await job();
    } finally {
      const next = this.waiting.shift();
      if (next) next.start();
      else this.running--;
    }
  }
}
