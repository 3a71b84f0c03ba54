/**
 * What a chaos run is made of: its modes, its timings (all derived from the per-call deadline), and
 * the settings the parent hands to each child process (as one JSON argument).
 *
 * @module
 */

/** The ways a run exercises ricochet, one after another, each on fresh processes. */
export const MODES = ["core-kv", "core-memory", "durable"] as const;

/**
 * - `core-kv`: core calls; responders deduplicate through `kvDedupe` on a replica-3 bucket.
 * - `core-memory`: core calls; each responder has the default in-memory store.
 * - `durable`: durable calls through `jetstreamQueue` (replica-3 streams), responders with `kvDedupe`.
 */
export type Mode = (typeof MODES)[number];

/** Whether `value` names a mode. */
export function isMode(value: string): value is Mode {
  return (MODES as readonly string[]).includes(value);
}

/** The modes whose duplicate executions must be zero (a shared dedupe store). */
export const ONCE_MODES: readonly Mode[] = ["core-kv", "durable"];

/** The service the chaos processes serve and call. */
export const SERVICE = "chaos";

/** Timings of one run; see {@link deriveTimings}. */
export interface Timings {
  /** Each call's whole deadline, retries included. */
  readonly timeoutMs: number;
  /** The first attempt's window with the client's default retries (3 attempts): `timeoutMs / 3`. */
  readonly attemptWindowMs: number;
  /** How long a paused (SIGSTOP) responder stays paused: longer than one attempt window. */
  readonly pauseMs: number;
  /**
   * kvDedupe's lease. The owner renews it every third of the lease, so a live claim always has at
   * least two thirds of it left: that must outlast the pause (plus a margin), or a paused owner would
   * lose its claim and the call would run twice.
   */
  readonly leaseMs: number;
  /** kvDedupe's replay window, and the bucket's TTL. */
  readonly kvTtlMs: number;
  /** The durable consumer's ack wait: shorter than the pause, so a pause causes redeliveries. */
  readonly ackWaitMs: number;
  /** How long past its deadline a call may take to settle before it counts as never settled. */
  readonly graceMs: number;
  /** How long a handler works after it wrote its effect line. */
  readonly workMs: number;
}

/**
 * Derives every timing from the per-call deadline. With the default 20 s: attempt window 6.7 s,
 * pause 8.2 s, lease 16 s (a claim keeps >= 10.7 s, more than the pause), ack wait 5 s.
 */
export function deriveTimings(timeoutMs = 20_000): Timings {
  const attemptWindowMs = Math.ceil(timeoutMs / 3);
  const pauseMs = attemptWindowMs + 1_500;
  const leaseMs = Math.ceil((1.5 * (pauseMs + 2_000)) / 1_000) * 1_000;
  return {
    timeoutMs,
    attemptWindowMs,
    pauseMs,
    leaseMs,
    kvTtlMs: 120_000,
    ackWaitMs: Math.min(5_000, pauseMs - 2_000),
    graceMs: 2_000,
    workMs: 20,
  };
}

/** What a responder process is told (argv[2], JSON). */
export interface ResponderConfig {
  readonly mode: Mode;
  /** Its slot, `r1`..`r3`; a restarted responder keeps its slot's name. */
  readonly name: string;
  /** Server URLs in the order it should try them (`noRandomize`). */
  readonly servers: readonly string[];
  /** The shared file every execution appends one line to. */
  readonly effectsFile: string;
  /** The shared file every answer the responders send is noted in. */
  readonly answersFile: string;
  /** The kvDedupe bucket, when the mode uses one. */
  readonly bucket: string | undefined;
  readonly timings: Timings;
}

/** What the client process is told (argv[2], JSON). */
export interface ClientConfig {
  readonly mode: Mode;
  readonly servers: readonly string[];
  /** Where it writes one JSON line per call (see `CallRecord`). */
  readonly callsFile: string;
  /** Call ids are `<idPrefix>-<n>`. */
  readonly idPrefix: string;
  /** Calls started per second. */
  readonly rate: number;
  /** How long it keeps starting calls. */
  readonly seconds: number;
  /** Calls in flight at most; the load waits for a free slot beyond that. */
  readonly maxInFlight: number;
  readonly timings: Timings;
}
