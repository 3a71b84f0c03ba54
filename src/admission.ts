/**
 * Admission: at most `concurrency` calls run at once; up to `maxQueue` more wait their turn in
 * arrival order; past that, the responder refuses them.
 *
 * @module
 */

/** Runs jobs with bounded concurrency and a bounded FIFO queue. */
export class Admission<J> {
  #active = 0;
  readonly #waiting: J[] = [];
  #idle: (() => void) | undefined;

  constructor(
    private readonly concurrency: number,
    private readonly maxQueue: number,
    private readonly run: (job: J) => Promise<void>,
  ) {}

  /** Jobs running now. */
  get active(): number {
    return this.#active;
  }

  /** Jobs waiting for a slot. */
  get waiting(): number {
    return this.#waiting.length;
  }

  /**
   * Runs `job` now if a slot is free, or queues it. Returns `false`, leaving the job to the caller,
   * when the queue is full; `unbounded` queues it anyway (for work whose source bounds it).
   */
  offer(job: J, unbounded = false): boolean {
    if (this.#active < this.concurrency) this.#start(job);
    else if (unbounded || this.#waiting.length < this.maxQueue) this.#waiting.push(job);
    else return false;
    return true;
  }

  /** Removes and returns the jobs still waiting for a slot (for a shutdown that cannot wait). */
  takeWaiting(): J[] {
    return this.#waiting.splice(0);
  }

  /** Resolves once nothing runs or waits. */
  idle(): Promise<void> {
    if (this.#active === 0 && this.#waiting.length === 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      this.#idle = resolve;
    });
  }

  #start(job: J): void {
    this.#active++;
    let ran: Promise<void>;
    try {
      ran = this.run(job);
    } catch (err) {
      ran = Promise.reject(err);
    }
    // One reaction on the job's own promise, not an async frame per job.
    void ran.then(this.#finish, this.#fail);
  }

  readonly #finish = (): void => {
    this.#active--;
    const next = this.#waiting.shift();
    if (next !== undefined) this.#start(next);
    else if (this.#active === 0) this.#idle?.();
  };

  /** A job that failed: its slot is freed, and its failure still surfaces (unhandled). */
  readonly #fail = (err: unknown): never => {
    this.#finish();
    throw err;
  };
}
