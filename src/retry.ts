/**
 * Retry policy: how many attempts, and how long to wait between them (exponential backoff with full
 * jitter). Which failures may be retried is each code's `retryable` flag in `RPC_CODES`.
 *
 * @module
 */

/** How a client retries a call. A call keeps one id and one reply subject across all its attempts. */
export interface RetryOptions {
  /**
   * Attempts in total, counting the first. `1` turns retries off. An attempt answered `NO_RESPONDERS`
   * reached nobody, so it does not count: it is retried with backoff until the deadline (unless this
   * is `1`, when it rejects at once).
   * @default 3
   */
  attempts?: number;
  /**
   * The backoff before the second attempt is drawn from `[0, baseMs)`; the range doubles with each
   * further attempt (full jitter).
   * @default 50
   */
  baseMs?: number;
  /**
   * The largest backoff range, in milliseconds.
   * @default 1000
   */
  maxMs?: number;
}

/** {@link RetryOptions} with every default filled in and checked. */
export interface RetryPolicy {
  readonly attempts: number;
  readonly baseMs: number;
  readonly maxMs: number;
}

/** The defaults, as documented on {@link RetryOptions}. */
export const DEFAULT_RETRY: RetryPolicy = Object.freeze({ attempts: 3, baseMs: 50, maxMs: 1000 });

/**
 * Fills in and checks retry options over a base policy.
 * @throws RangeError naming the option when a value is out of range.
 */
export function resolveRetry(
  options: RetryOptions | undefined,
  base: RetryPolicy = DEFAULT_RETRY,
  where = "retry",
): RetryPolicy {
  if (options === undefined) return base;
  const attempts = options.attempts ?? base.attempts;
  const baseMs = options.baseMs ?? base.baseMs;
  const maxMs = options.maxMs ?? base.maxMs;
  if (!Number.isInteger(attempts) || attempts < 1) {
    throw new RangeError(`${where}.attempts must be an integer >= 1, got ${options.attempts}`);
  }
  if (!Number.isFinite(baseMs) || baseMs < 0) {
    throw new RangeError(`${where}.baseMs must be a number >= 0, got ${options.baseMs}`);
  }
  if (!Number.isFinite(maxMs) || maxMs < baseMs) {
    throw new RangeError(
      `${where}.maxMs must be a number >= baseMs (${baseMs}), got ${options.maxMs}`,
    );
  }
  return Object.freeze({ attempts, baseMs, maxMs });
}

/**
 * The wait before attempt `next` (2 for the first retry), drawn uniformly from
 * `[0, min(maxMs, baseMs * 2^(next-2)))`: "full jitter", which spreads retries from many callers.
 *
 * @param random a source of numbers in `[0, 1)`; injected so tests are deterministic.
 */
export function backoffMs(
  policy: RetryPolicy,
  next: number,
  random: () => number = Math.random,
): number {
  const ceiling = Math.min(policy.maxMs, policy.baseMs * 2 ** Math.max(0, next - 2));
  return Math.floor(random() * ceiling);
}
