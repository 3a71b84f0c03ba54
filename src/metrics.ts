/**
 * Metrics, built as middleware plus two hooks: per method, calls by outcome code, a latency histogram,
 * calls in flight, retries and dedupe hits. Read them with `snapshot()`, or export them to Prometheus
 * through `prom-client` (an optional peer: pass the module in).
 *
 * @module
 */
import type * as PromClient from "prom-client";

/**
 * The `prom-client` module: pass the module itself (`import * as prom from "prom-client"`), and a
 * `Registry` of it if not the default. Typed by shape only, so ricochet's published types never
 * import the optional peer.
 */
export interface PromClientModule {
  readonly Counter: object;
  readonly Gauge: object;
  readonly Histogram: object;
  readonly register: object;
}

import type { RetryInfo } from "./call.js";
import type { DurableOutcome } from "./durable.js";
import { isRpcError } from "./errors.js";
import type { ClientMiddleware, ResponderMiddleware } from "./middleware.js";
import type { DedupeOutcome } from "./once.js";

/** The latency buckets, in seconds, unless you pass your own. */
export const DEFAULT_BUCKETS = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];

/** Options for {@link createMetrics}. */
export interface MetricsOptions {
  /** Histogram bucket upper bounds, in seconds. @default DEFAULT_BUCKETS */
  buckets?: number[];
}

type Side = "client" | "responder";

/** One method's figures on one side. */
export interface MethodMetrics {
  /** Calls finished, by outcome: `OK` or the error code. */
  outcomes: Record<string, number>;
  /** Calls running now. */
  inFlight: number;
  /** Cumulative latency histogram: bucket upper bound (seconds, or `+Inf`) → calls at or under it. */
  latency: Record<string, number>;
  /** Sum of latencies, in seconds. */
  latencySum: number;
  /** Retries sent (client side). */
  retries: number;
  /** Calls answered without running the handler, by how (responder side): duplicates, or refused because the dedupe store was full. */
  dedupe: Record<DedupeOutcome, number>;
  /**
   * Durable commands (responder side), by what happened after a failed run: delivered again after the
   * handler's own failure (`redelivered`), tried again in place after a transient failure (`retried`),
   * or moved to the dead-letter subject (`deadLettered`).
   */
  durable: Record<DurableOutcome, number>;
}

/** Everything recorded, by side and then by `<service>.<method>`. */
export type MetricsSnapshot = Record<Side, Record<string, MethodMetrics>>;

/** What {@link createMetrics} returns: wire it into clients and responders, then read or export it. */
export interface Metrics {
  /** Spread into `createClient` options: `{ transport, ...metrics.client }`. */
  readonly client: { use: ClientMiddleware[]; onRetry: (info: RetryInfo) => void };
  /** Spread into `createResponder` options: `{ transport, ...metrics.responder }`. */
  readonly responder: {
    use: ResponderMiddleware[];
    onDuplicate: (info: { service: string; method: string; outcome: DedupeOutcome }) => void;
    onDurable: (info: { service: string; method: string; outcome: DurableOutcome }) => void;
  };
  /** A copy of everything recorded so far. */
  snapshot(): MetricsSnapshot;
  /**
   * Registers Prometheus metrics that read this recorder at scrape time: `ricochet_calls_total`
   * (labels side, service, method, code), `ricochet_call_duration_seconds` (histogram),
   * `ricochet_calls_in_flight`, `ricochet_retries_total`, `ricochet_dedupe_total` and
   * `ricochet_durable_total` (label outcome).
   * @param prom the `prom-client` module
   * @param registry where to register @default prom.register
   */
  registerPrometheus(prom: PromClientModule, registry?: object): void;
}

function codeOf(err: unknown): string {
  return isRpcError(err) ? err.code : "INTERNAL";
}

/**
 * Creates a metrics recorder for clients and responders.
 *
 * @example
 * import * as prom from "prom-client";
 * const metrics = createMetrics();
 * metrics.registerPrometheus(prom);
 * createResponder(billing, handlers, { transport, ...metrics.responder });
 * createClient(billing, { transport, ...metrics.client });
 */
export function createMetrics(options: MetricsOptions = {}): Metrics {
  const buckets = [...(options.buckets ?? DEFAULT_BUCKETS)].sort((a, b) => a - b);
  if (buckets.some((b) => !Number.isFinite(b) || b <= 0)) {
    throw new RangeError(
      `buckets must be positive numbers of seconds, got ${JSON.stringify(options.buckets)}`,
    );
  }
  const state: Record<Side, Map<string, MethodMetrics>> = {
    client: new Map(),
    responder: new Map(),
  };
  const of = (side: Side, key: string): MethodMetrics => {
    let m = state[side].get(key);
    if (m === undefined) {
      const latency: Record<string, number> = {};
      for (const b of buckets) latency[String(b)] = 0;
      latency["+Inf"] = 0;
      m = {
        outcomes: {},
        inFlight: 0,
        latency,
        latencySum: 0,
        retries: 0,
        dedupe: { replayed: 0, joined: 0, conflict: 0, refused: 0, dropped: 0 },
        durable: { redelivered: 0, retried: 0, deadLettered: 0 },
      };
      state[side].set(key, m);
    }
    return m;
  };
  const finish = (m: MethodMetrics, code: string, seconds: number) => {
    m.inFlight--;
    m.outcomes[code] = (m.outcomes[code] ?? 0) + 1;
    m.latencySum += seconds;
    for (const b of buckets)
      if (seconds <= b) m.latency[String(b)] = (m.latency[String(b)] ?? 0) + 1;
    m.latency["+Inf"] = (m.latency["+Inf"] ?? 0) + 1;
  };
  const finishHooks: Array<(side: Side, key: string, code: string, seconds: number) => void> = [];
  /** Times one call through `next()` and records its outcome. */
  const observe = (side: Side, key: string, next: () => Promise<unknown>) => {
    const m = of(side, key);
    m.inFlight++;
    const t0 = performance.now();
    const done = (code: string) => {
      const seconds = (performance.now() - t0) / 1000;
      finish(m, code, seconds);
      for (const hook of finishHooks) hook(side, key, code, seconds);
    };
    return next().then(
      (value) => {
        done("OK");
        return value;
      },
      (err: unknown) => {
        done(codeOf(err));
        throw err;
      },
    );
  };

  const snapshot = (): MetricsSnapshot => {
    const copy = (side: Side) =>
      Object.fromEntries([...state[side]].map(([k, m]) => [k, structuredClone(m)]));
    return { client: copy("client"), responder: copy("responder") };
  };

  const registerPrometheus = (module: PromClientModule, registered?: object) => {
    const prom = module as typeof PromClient;
    const registry = (registered ?? prom.register) as PromClient.Registry;
    const labelsOf = (side: Side, key: string) => {
      const dot = key.lastIndexOf(".");
      return { side, service: key.slice(0, dot), method: key.slice(dot + 1) };
    };
    const each = (fn: (side: Side, key: string, m: MethodMetrics) => void) => {
      for (const side of ["client", "responder"] as const)
        for (const [key, m] of state[side]) fn(side, key, m);
    };
    new prom.Counter({
      name: "ricochet_calls_total",
      help: "Calls finished, by side, method and outcome code (OK or the error code).",
      labelNames: ["side", "service", "method", "code"],
      registers: [registry],
      collect() {
        this.reset();
        each((side, key, m) => {
          for (const [code, n] of Object.entries(m.outcomes))
            this.inc({ ...labelsOf(side, key), code }, n);
        });
      },
    });
    new prom.Gauge({
      name: "ricochet_calls_in_flight",
      help: "Calls running now, by side and method.",
      labelNames: ["side", "service", "method"],
      registers: [registry],
      collect() {
        this.reset();
        each((side, key, m) => this.set(labelsOf(side, key), m.inFlight));
      },
    });
    new prom.Counter({
      name: "ricochet_retries_total",
      help: "Retries a client sent, by method.",
      labelNames: ["side", "service", "method"],
      registers: [registry],
      collect() {
        this.reset();
        each((side, key, m) => {
          if (side === "client") this.inc(labelsOf(side, key), m.retries);
        });
      },
    });
    new prom.Counter({
      name: "ricochet_dedupe_total",
      help: "Calls a responder answered without running the handler, by outcome: replayed, joined or conflict (duplicates), refused (dedupe store full, OVERLOADED), dropped (a duplicate whose stored reply was dropped, REPLY_DROPPED).",
      labelNames: ["side", "service", "method", "outcome"],
      registers: [registry],
      collect() {
        this.reset();
        each((side, key, m) => {
          if (side !== "responder") return;
          for (const [outcome, n] of Object.entries(m.dedupe))
            this.inc({ ...labelsOf(side, key), outcome }, n);
        });
      },
    });
    new prom.Counter({
      name: "ricochet_durable_total",
      help: "Durable commands after a failed run, by outcome: redelivered (the handler's own failure), retried (in place, after a transient failure), deadLettered.",
      labelNames: ["side", "service", "method", "outcome"],
      registers: [registry],
      collect() {
        this.reset();
        each((side, key, m) => {
          if (side !== "responder") return;
          for (const [outcome, n] of Object.entries(m.durable))
            this.inc({ ...labelsOf(side, key), outcome }, n);
        });
      },
    });
    // A histogram cannot be set from totals, so this one is fed as calls finish, from registration on.
    const histogram = new prom.Histogram({
      name: "ricochet_call_duration_seconds",
      help: "Call latency: on the client from call to settlement, in the responder around the handler.",
      labelNames: ["side", "service", "method", "code"],
      buckets,
      registers: [registry],
    });
    finishHooks.push((side, key, code, seconds) =>
      histogram.observe({ ...labelsOf(side, key), code }, seconds),
    );
  };

  return {
    client: {
      use: [(call, next) => observe("client", call.subject, next)],
      onRetry: (info) => {
        of("client", info.subject).retries++;
      },
    },
    responder: {
      // By the contract's names: a durable command's subject is the queue's, not `<service>.<method>`.
      use: [(ctx, _request, next) => observe("responder", `${ctx.service}.${ctx.method}`, next)],
      onDuplicate: (info) => {
        of("responder", `${info.service}.${info.method}`).dedupe[info.outcome]++;
      },
      onDurable: (info) => {
        of("responder", `${info.service}.${info.method}`).durable[info.outcome]++;
      },
    },
    snapshot,
    registerPrometheus,
  };
}
