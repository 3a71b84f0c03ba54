/** What bench/run.ts asks a worker (bench/worker.ts) to measure, and what the worker reports. */
import type { PayloadName } from "./payload.js";

export interface Plan {
  /** The payload sets to measure, in order; every phase below runs once per set. */
  payloads: PayloadName[];
  /** Sequential calls, one at a time: p50 and p99. Stops early (and says so) after `maxMs`. */
  /**
   * Calls at `inflight` for `durationMs` before anything is measured, so that every implementation is
   * measured past its process's start: compiled, its heap grown to its working size, its caches full.
   */
  warm?: { inflight: number; durationMs: number };
  latency?: { warmup: number; count: number; maxMs: number };
  /**
   * Closed-loop runs. `bytes` pads the request to that size and applies only to sets that can be
   * padded (scalar); other sets skip those entries.
   */
  throughput?: Array<{ inflight: number; bytes?: number; durationMs: number; warmupMs: number }>;
  memory?: { inflight: number; soakCalls: number; soakInflight: number; maxMs: number };
}

/** The key of a throughput entry in results: `64` for the set's own body, `64@8192` for a padded one. */
export const throughputKey = (t: { inflight: number; bytes?: number | undefined }) =>
  t.bytes === undefined ? String(t.inflight) : `${t.inflight}@${t.bytes}`;

export interface PayloadResult {
  /** JSON sizes of the set's own request and response, in bytes. */
  requestBytes: number;
  responseBytes: number;
  latency?: { p50us: number; p99us: number; count: number };
  /** Calls per second, and this process's CPU time per call (client and responder together). */
  throughput?: Array<{
    key: string;
    inflight: number;
    /** JSON size of the request sent. */
    bytes: number;
    callsPerSec: number;
    cpuUsPerCall: number;
  }>;
  memory?: {
    bytesPerInflight: number;
    soakGrowth: number;
    soakCalls: number;
    /** Calls per second during the soak. */
    soakCallsPerSec: number;
    /** Right after the soak, after GC: the JS heap, and the ArrayBuffers outside it, in MiB. */
    heapMiB: number;
    arrayBuffersMiB: number;
  };
}

/** What one worker prints: a result per payload set. */
export type WorkerResult = Partial<Record<PayloadName, PayloadResult>>;
