/**
 * The responder: receive → decode → validate → handler → validate → encode → reply. It never crashes
 * on bad input, sends nothing private, and drains on stop.
 *
 * @module
 */
import { setMaxListeners } from "node:events";
import { nanoid } from "nanoid";
import pTimeout from "p-timeout";
import { type Logger, pino } from "pino";
import type { input, output } from "zod/v4/core";
import { Admission } from "./admission.js";
import type { CallContext } from "./context.js";
import type { AnyContract, AnyMethod, MethodName } from "./contract.js";
import { memoryDedupe } from "./dedupe/memory.js";
import type { DedupeStore, StoredReply } from "./dedupe/types.js";
import { EndpointStats, endpointsOf, serveDiscovery } from "./discovery.js";
import { type Answer, type DurableOutcome, settleCommand } from "./durable.js";
import { RpcError } from "./errors.js";
import { errorReply } from "./execute.js";
import { callHandler, type IncomingCall, readCallMeta } from "./handle.js";
import type { ResponderMiddleware } from "./middleware.js";
import type { DedupeOutcome } from "./once.js";
import { type HeldCall, ProgressTracker } from "./progress.js";
import { HEADER_CALL_ID, HEADER_ERROR, HEADER_ERROR_CODE, methodSubject } from "./protocol.js";
import { SlotSet } from "./slots.js";
import { PayloadTooLargeError } from "./transport/errors.js";
import type { DurableQueue, QueueConsumer, QueuedCommand } from "./transport/queue.js";
import type { Transport, TransportMessage, TransportSubscription } from "./transport/types.js";
import { compileMethod } from "./validate.js";

/** The handler of one method: gets the parsed request, returns the response (or a promise of it). */
export type Handler<M extends AnyMethod> = (
  request: output<M["request"]>,
  ctx: CallContext<M>,
) => input<M["response"]> | Promise<input<M["response"]>>;

/** One handler per contract method. */
export type Handlers<C extends AnyContract> = { [K in MethodName<C>]: Handler<C["methods"][K]> };

/** Options for {@link createResponder}. */
export interface ResponderOptions {
  /** The bus: {@link natsTransport} or {@link memoryTransport}. */
  transport: Transport;
  /** Queue group; responders in one group share the calls. @default the contract's service name */
  queue?: string;
  /** Handlers running at once, across all methods. @default 64 */
  concurrency?: number;
  /**
   * Calls that may wait for a free slot once `concurrency` is reached. Past that, calls are refused
   * at once with `OVERLOADED`, which clients retry (often on another member of the queue group).
   * @default 1024
   */
  maxQueue?: number;
  /**
   * The deadline for a call whose caller sent no budget: no `Ricochet-Timeout` header and no call
   * token (plain NATS requests). @default 30000
   */
  defaultTimeoutMs?: number;
  /** A pino logger; ricochet logs through a child of it. @default a silent logger */
  logger?: Logger;
  /** Middleware run around every handler, the first outermost, after validation. @default [] */
  use?: ResponderMiddleware[];
  /**
   * Told when a durable command that failed is delivered again, tried again in place (a transient
   * failure), or dead-lettered (for metrics).
   */
  onDurable?: (info: {
    service: string;
    method: string;
    id: string;
    outcome: DurableOutcome;
  }) => void;
  /** Told when a duplicate call is answered without running its handler (for metrics). */
  onDuplicate?: (info: {
    service: string;
    method: string;
    id: string;
    outcome: DedupeOutcome;
  }) => void;
  /**
   * Answers the NATS micro discovery protocol (`$SRV.PING|INFO|STATS`), so `nats micro ls` and other
   * micro clients list this responder, its methods with their JSON Schemas, and its statistics.
   * @default true
   */
  discovery?: boolean;
  /**
   * How long `stop()` waits for the calls in flight (and those queued) to finish. Past it, it aborts
   * their handlers' `ctx.signal`, answers their callers `UNAVAILABLE` (retryable: another instance will
   * take the call), has durable commands delivered again, and resolves, even if a handler ignores its
   * signal. Such a handler may still be running when its call is retried elsewhere.
   * @default 10000
   */
  graceMs?: number;
  /** This instance's id in discovery. @default a new nanoid */
  instanceId?: string;
  /**
   * Deduplicates calls by id: one id runs its handler at most once for everything sharing the store;
   * duplicates in flight share the first execution, later ones get its stored reply. `false` turns it
   * off; then a retried call (after a lost reply or a slow attempt) can run its handler again.
   * @default memoryDedupe() — one store per responder, protecting this process only
   */
  dedupe?: DedupeStore | false;
  /**
   * Also serve durable calls: consume this service's commands from the queue (e.g.
   * {@link jetstreamQueue}), sharing them with the other responders of the service. A command is
   * acknowledged once answered; one whose handler failed (`INTERNAL`, `TIMEOUT`) is delivered again,
   * up to the queue's `maxDeliver`, then dead-lettered; one that cannot be decoded or validated is
   * dead-lettered at once. Its handler gets `defaultTimeoutMs` per delivery, and `ctx.attempt` is the
   * delivery number. Give it a shared `dedupe` store ({@link kvDedupe}) so a redelivered command
   * whose handler already ran is answered from the store instead of running again.
   * @default undefined — core calls only
   */
  durable?: DurableQueue;
}

/** A running (or stopped) responder. */
export interface Responder {
  /** Subscribes to every method's subject. Resolves once the bus has the subscriptions. */
  start(): Promise<void>;
  /**
   * Drains: takes no new calls (queue-group peers get them), lets the calls in flight finish and
   * reply for up to `graceMs`, answers those still unfinished then with a retryable `UNAVAILABLE`,
   * (unsubscribing and the final flush are bounded by `graceMs` each too),
   * flushes the replies, then resolves. Idempotent.
   */
  stop(): Promise<void>;
  /** Handlers running now. */
  readonly inFlight: number;
  /** This instance's id, as discovery reports it. */
  readonly id: string;
  /** Per-method totals since start: calls answered, error replies, the last error, time to reply. */
  stats(): Record<
    string,
    { requests: number; errors: number; lastError: string; processingMs: number }
  >;
}

/** A call from receipt to its answer. */
interface Job extends IncomingCall {
  /** performance.now() at receipt, for statistics. */
  readonly t0: number;
  /** Its progress messages, while it is held here (see {@link ProgressTracker}). */
  held: HeldCall | undefined;
  /** Set once its caller was answered (or its command settled by a shutdown): later answers are dropped. */
  answered?: boolean;
  /** Its handle in the running jobs, while it runs. */
  slot?: number;
}

/**
 * Creates a responder that serves `contract` with `handlers`. Call `start()` to begin.
 *
 * @throws TypeError or RangeError for a missing handler or a bad option, naming it.
 * @example
 * const responder = createResponder(billing, {
 *   charge: async ({ accountId, amountCents }, ctx) => {
 *     if (amountCents > 100) throw ctx.fail("INSUFFICIENT_FUNDS", { balanceCents: 100 });
 *     return { chargeId: `ch_${ctx.id}`, balanceCents: 100 - amountCents };
 *   },
 * }, { transport: memoryTransport() });
 * await responder.start();
 */
export function createResponder<C extends AnyContract>(
  contract: C,
  handlers: NoInfer<Handlers<C>>,
  options: ResponderOptions,
): Responder {
  const { transport } = options;
  if (transport === undefined) throw new TypeError("createResponder(): `transport` is required");
  for (const [name, m] of Object.entries(contract.methods)) {
    if (typeof (handlers as Record<string, unknown>)[name] !== "function") {
      throw new TypeError(
        `createResponder(): no handler for method '${name}' of ${contract.service}`,
      );
    }
    // Compiled now, not on the first call (see compiled()).
    compileMethod(m);
  }
  const queue = options.queue ?? contract.service;
  const concurrency = positiveInt(options.concurrency ?? 64, "concurrency");
  const maxQueue = options.maxQueue ?? 1024;
  if (!Number.isInteger(maxQueue) || maxQueue < 0)
    throw new RangeError(`maxQueue must be an integer >= 0, got ${options.maxQueue}`);
  const defaultTimeoutMs = positiveInt(options.defaultTimeoutMs ?? 30_000, "defaultTimeoutMs");
  const graceMs = options.graceMs ?? 10_000;
  if (!Number.isFinite(graceMs) || graceMs < 0)
    throw new RangeError(`graceMs must be a number >= 0, got ${options.graceMs}`);
  /** Aborted when a shutdown stops waiting for the calls in flight. */
  const shutdown = new AbortController();
  // Every running handler that reads ctx.signal listens to it: no listener limit applies.
  setMaxListeners(0, shutdown.signal);
  /** Set when stop() could not confirm its unsubscribes: calls that still arrive are refused. */
  let refusing = false;
  /** Jobs whose handling has started and not ended. */
  const running = new SlotSet<Job>();
  const dedupe = options.dedupe === false ? undefined : (options.dedupe ?? memoryDedupe());
  const use = [...(options.use ?? [])];
  const log = (options.logger ?? pino({ level: "silent" })).child({
    lib: "ricochet",
    service: contract.service,
    role: "responder",
  });

  if (options.durable !== undefined && options.dedupe === undefined) {
    log.warn(
      "durable commands with the default memoryDedupe(): a command redelivered to another instance runs its handler again; pass dedupe: kvDedupe(kv) to share one store",
    );
  }
  const discovery = options.discovery ?? true;
  const id = options.instanceId ?? nanoid();
  if (!/^[A-Za-z0-9_-]+$/.test(id))
    throw new TypeError(`instanceId '${id}' must be letters, digits, '-' or '_'`);
  const stats = new Map(Object.keys(contract.methods).map((name) => [name, new EndpointStats()]));
  let subs: TransportSubscription[] = [];
  let consumer: QueueConsumer | undefined;
  const queueOf = options.durable;
  let starting: Promise<void> | undefined;
  let stopping: Promise<void> | undefined;
  const progress = new ProgressTracker(transport, id, log);
  const handle = callHandler({
    contract,
    handlers: handlers as Record<string, unknown>,
    use,
    log,
    defaultTimeoutMs,
    dedupe,
    onDuplicate: options.onDuplicate,
    stopping: shutdown.signal,
  });

  /** Handles one admitted job, then answers it: a reply, or a settlement on the durable queue. */
  const run = (job: Job): Promise<void> => {
    const command = job.command;
    job.slot = running.add(job);
    if (command !== undefined) return settleJob(job, command);
    // A core call is answered in one step: no async layers of ours on the hot path.
    let answer: Answer | Promise<Answer>;
    try {
      answer = handleSafely(job);
    } catch (err) {
      return stopped(job, err);
    }
    if (answer instanceof Promise) {
      return answer.then(
        (done) => answered(job, done),
        (err: unknown) => stopped(job, err),
      );
    }
    answered(job, answer);
    return DONE;
  };
  /** Even the INTERNAL answer failed (its log line threw): the job stops running, and the error surfaces. */
  const stopped = (job: Job, err: unknown): never => {
    running.delete(job.slot as number, job);
    throw err;
  };
  /** Sends a core call's answer; the job stops running either way. */
  const answered = (job: Job, answer: Answer) => {
    try {
      send(job, answer.reply);
    } finally {
      running.delete(job.slot as number, job);
    }
  };
  const settleJob = async (job: Job, command: QueuedCommand) => {
    try {
      await settle(job, command);
    } finally {
      running.delete(job.slot as number, job);
    }
  };
  /** Runs a durable command and settles it on its queue. */
  const settle = async (job: Job, command: QueuedCommand) => {
    // A command's time starts when it gets a slot: however long it queued, it has its full budget.
    job.received = Date.now();
    // A command past its last delivery: an earlier one never finished. Dead-letter it unrun.
    const exhausted = queueOf !== undefined && command.delivery > queueOf.maxDeliver;
    let answer: Answer | undefined;
    if (!exhausted) answer = await handleSafely(job);
    if (queueOf !== undefined) {
      // Failed for now, for a reason outside the handler: try again here, later, without a redelivery.
      for (let tries = 0; answer?.transient && !job.answered; tries++) {
        const left = command.storedAt + queueOf.transientForMs - Date.now();
        if (left <= 0) break;
        const delay = Math.min(queueOf.retryDelayMs * 2 ** tries, 60_000, left);
        command.hold(delay + 1000);
        if (tries === 0) {
          log.warn(
            { callId: command.header(HEADER_CALL_ID), subject: command.subject, delayMs: delay },
            "durable command failed for now (a dependency is unavailable); trying it again here later",
          );
        }
        if (!(await pause(delay, shutdown.signal)) || job.answered) return;
        durableOutcome(job, "retried");
        job.received = Date.now();
        answer = await handleSafely(job);
      }
      if (job.answered) return;
      await settleCommand(command, answer, {
        maxDeliver: queueOf.maxDeliver,
        name: `${contract.service}.${job.name}`,
        transientForMs: queueOf.transientForMs,
        onOutcome: (outcome) => durableOutcome(job, outcome),
        send: (reply) => send(job, reply),
        log,
      });
    }
  };
  /** Reports what happened to a failed durable command, by the contract's names. */
  const durableOutcome = (job: Job, outcome: DurableOutcome) =>
    options.onDurable?.({
      service: contract.service,
      method: job.name,
      id: job.msg.header(HEADER_CALL_ID) ?? "",
      outcome,
    });
  /** Handles `job`; a failure of ricochet itself becomes an INTERNAL answer. */
  const handleSafely = (job: Job): Answer | Promise<Answer> => {
    let answer: Answer | Promise<Answer>;
    try {
      answer = handle(job);
    } catch (err) {
      return unexpected(job, err);
    }
    return answer instanceof Promise
      ? answer.catch((err: unknown) => unexpected(job, err))
      : answer;
  };
  /** handle() answers every failure itself; reaching here is a bug in ricochet, not the caller's. */
  const unexpected = (job: Job, err: unknown): Answer => {
    log.error({ err, subject: job.msg.subject }, "unexpected failure while handling a call");
    const internal = new RpcError("INTERNAL", `${job.msg.subject}: internal error`);
    return { reply: errorReply(internal).reply, retryable: true };
  };
  const admission = new Admission<Job>(concurrency, maxQueue, run);

  const onMessage = (name: string, method: AnyMethod | undefined, msg: TransportMessage) => {
    const received = Date.now();
    if (refusing) {
      const message = `${msg.subject}: the responder is stopping; retry: another instance will take it`;
      send(
        { name, method, msg, received, t0: performance.now(), held: undefined },
        errorReply(new RpcError("UNAVAILABLE", message)).reply,
      );
      return;
    }
    // Read once, here: the progress tracker needs it now, the handling later.
    const sent = readCallMeta(msg, false);
    if (sent.id === undefined && msg.reply?.startsWith("_R_.")) crossAccount(name, msg);
    // Held from receipt: a caller that retried a queued call elsewhere would have it run twice.
    const budget = typeof sent.timeout === "number" ? sent.timeout : defaultTimeoutMs;
    const held = progress.hold(msg.reply, sent.progress, received, budget);
    const job: Job = { name, method, msg, received, t0: performance.now(), held, sent };
    if (admission.offer(job)) return;
    log.warn(
      { subject: msg.subject, active: admission.active, waiting: admission.waiting },
      "overloaded; refusing a call",
    );
    const message = `${msg.subject}: responder at capacity (${concurrency} running, ${maxQueue} waiting); retry`;
    send(job, errorReply(new RpcError("OVERLOADED", message)).reply);
  };

  /**
   * A request that crossed a service import: nats-server gave it a reply subject of its own, so a call
   * token the caller put there is gone. Said once per method: such callers must send headers.
   */
  const crossAccount = (name: string, msg: TransportMessage) => {
    const info = msg.header("Nats-Request-Info");
    if (info === undefined || warnedCrossAccount.has(name)) return;
    warnedCrossAccount.add(name);
    let account = "another account";
    try {
      const acc = (JSON.parse(info) as { acc?: unknown }).acc;
      if (typeof acc === "string") account = `account ${acc}`;
    } catch {
      // not JSON: name no account
    }
    log.warn(
      { subject: msg.subject, requestInfo: info },
      `${msg.subject}: a call from ${account} came through a service import without ricochet headers: ` +
        "the server replaced its reply subject, so its call id, deadline and attempt were lost (no deduplication). " +
        'Callers in another account must use createClient(..., { wire: "headers" })',
    );
  };
  const warnedCrossAccount = new Set<string>();

  /** A durable command: it waits for a slot however long the line (the queue bounds how many come). */
  const onCommand = (command: QueuedCommand) => {
    const name = command.method;
    const method = Object.hasOwn(contract.methods, name) ? contract.methods[name] : undefined;
    const job: Job = {
      name,
      method,
      msg: command,
      command,
      received: Date.now(),
      t0: performance.now(),
      held: undefined,
    };
    admission.offer(job, true);
  };

  /** Delivers a reply to the caller (if it asked for one) and counts the call in the statistics. */
  const send = (job: Job, reply: StoredReply) => {
    // A call a shutdown already answered: its handler finished too late.
    if (job.answered) return;
    job.answered = true;
    progress.release(job.held);
    const headers = reply.headers;
    const msg = job.msg;
    if (msg.reply !== undefined) {
      try {
        transport.publish(
          msg.reply,
          reply.data,
          headers === undefined ? {} : { headers: { ...headers } },
        );
      } catch (err) {
        log.error({ err, subject: msg.subject }, "could not send the reply");
        // The fallback error reply records the call, once.
        if (headers === undefined) return send(job, errorReply(sendError(err, msg.subject)).reply);
      }
    }
    const code = headers?.[HEADER_ERROR_CODE];
    stats
      .get(job.name)
      ?.record(
        performance.now() - job.t0,
        code === undefined
          ? undefined
          : { status: Number(code), message: headers?.[HEADER_ERROR] ?? "" },
      );
  };

  /** Subscribes to every method, the durable queue and discovery; resolves once the bus has them. */
  const subscribe = async () => {
    // A subscription the server refuses is reported before the flush below completes.
    const refused: { subject: string; err: Error }[] = [];
    const onRefused = (err: Error, subject: string) => {
      if (err.name === "PermissionViolationError") refused.push({ subject, err });
    };
    subs = Object.entries(contract.methods).map(([name, m]) => {
      const subject = methodSubject(contract.service, name);
      return transport.subscribe(subject, (msg) => onMessage(name, m, msg), {
        queue,
        onError: (err) => {
          log.error({ err, method: name }, "subscription failed");
          onRefused(err, subject);
        },
      });
    });
    if (queueOf !== undefined) {
      consumer = await queueOf.consume(contract.service, onCommand, {
        window: concurrency,
        holdMs: 2 * defaultTimeoutMs,
        onError: (err) => log.error({ err }, `durable queue: ${err.message}`),
        onWarning: (message) => log.warn(`durable queue: ${message}`),
      });
    }
    if (discovery) {
      const endpoints = endpointsOf(contract, queue, (name) =>
        methodSubject(contract.service, name),
      );
      subs.push(
        ...serveDiscovery(
          transport,
          { contract, id, started: new Date(), endpoints, stats, durable: queueOf !== undefined },
          log,
          onRefused,
        ),
      );
    }
    await transport.flush();
    if (refused.length > 0) {
      const subjects = refused.map((r) => r.subject).join(", ");
      throw new Error(
        `createResponder(): ${contract.service}: the server refused to subscribe to ${subjects} (${refused[0]?.err.message}); grant this user subscribe permission on those subjects (see docs/security.md)`,
        { cause: refused[0]?.err },
      );
    }
  };

  /**
   * Gives up on the calls still running or queued at the end of the grace period: aborts their
   * handlers' signals, answers their callers with a retryable UNAVAILABLE, and has durable commands
   * delivered again. A handler that ignores its signal may still finish later; its answer is dropped.
   */
  const abandon = () => {
    const jobs = [...running.values(), ...admission.takeWaiting()];
    log.warn(
      { abandoned: jobs.length, graceMs },
      "calls still unfinished after graceMs; answering them UNAVAILABLE so their callers retry elsewhere",
    );
    shutdown.abort(new RpcError("UNAVAILABLE", "the responder is stopping"));
    for (const job of jobs) {
      if (job.command !== undefined) {
        job.answered = true;
        job.command.retry();
      } else send(job, errorReply(abandonedError(job, graceMs)).reply);
    }
  };

  return {
    get inFlight() {
      return admission.active;
    },
    id,
    stats() {
      const out: ReturnType<Responder["stats"]> = {};
      for (const [name, s] of stats) {
        out[name] = {
          requests: s.requests,
          errors: s.errors,
          lastError: s.lastError,
          processingMs: s.processingNs / 1e6,
        };
      }
      return out;
    },
    start() {
      if (stopping)
        return Promise.reject(
          new Error("createResponder(): a stopped responder cannot start again; create a new one"),
        );
      starting ??= (async () => {
        try {
          await subscribe();
        } catch (err) {
          // Leave nothing serving from a responder whose start failed.
          const made = subs.splice(0);
          await Promise.all([
            ...made.map((s) => s.drain().catch(() => undefined)),
            consumer?.stop().catch(() => undefined),
          ]);
          consumer = undefined;
          starting = undefined;
          throw err;
        }
        log.info(
          {
            queue,
            id,
            methods: Object.keys(contract.methods),
            durable: queueOf !== undefined,
            ...(transport.server === undefined ? {} : { server: transport.server }),
          },
          queueOf === undefined
            ? "responder started (core calls only: durable commands are not consumed here; pass durable: queue to serve them)"
            : "responder started",
        );
      })();
      return starting;
    },
    stop() {
      stopping ??= (async () => {
        // A start that failed left nothing to stop.
        await starting?.catch(() => undefined);
        // A connection that is down cannot confirm the unsubscribe; the calls in flight still finish.
        const unsubscribed = (err: unknown) => log.warn({ err }, "could not drain a subscription");
        // Bounded too: a connection that is down may not confirm the unsubscribes for a long time.
        const drained = await pTimeout(
          Promise.all([
            ...subs.map((s) => s.drain().catch(unsubscribed)),
            consumer?.stop().catch(unsubscribed),
          ]).then(() => true),
          { milliseconds: graceMs, fallback: () => false },
        );
        if (!drained) {
          refusing = true;
          log.warn(
            { graceMs },
            "subscriptions not drained within graceMs; refusing calls from now on",
          );
        }
        log.info(
          { inFlight: admission.active, waiting: admission.waiting, graceMs },
          "draining: no new calls; finishing the calls in flight",
        );
        const finished = await pTimeout(
          admission.idle().then(() => true),
          { milliseconds: graceMs, fallback: () => false },
        );
        if (!finished) abandon();
        await pTimeout(transport.flush(), { milliseconds: graceMs }).catch((err) =>
          log.warn({ err }, "could not flush the last replies"),
        );
        log.info("responder stopped");
      })();
      return stopping;
    },
  };
}

/** The settled promise of a job answered at once. */
const DONE: Promise<void> = Promise.resolve();

/** Resolves `true` after `ms`, or `false` as soon as `signal` aborts. */
function pause(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const done = (value: boolean) => {
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
      resolve(value);
    };
    const onAbort = () => done(false);
    const timer = setTimeout(() => done(true), ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * What a shutdown that stopped waiting says to the caller of a call it abandons (retryable: the call
 * did not finish here, and another instance may run it).
 */
function abandonedError(job: Job, graceMs: number): RpcError {
  const subject = job.msg.subject;
  return new RpcError(
    "UNAVAILABLE",
    `${subject}: the responder stopped before this call finished (it waited graceMs ${graceMs} ms); retry: another instance will take it`,
    { subject },
  );
}

function sendError(err: unknown, subject: string): RpcError {
  return err instanceof PayloadTooLargeError
    ? new RpcError(
        "PAYLOAD_TOO_LARGE",
        `${subject}: the reply is larger than the server's max_payload`,
      )
    : new RpcError("INTERNAL", `${subject}: internal error while sending the reply`);
}

function positiveInt(value: number, name: string): number {
  if (!Number.isInteger(value) || value < 1)
    throw new RangeError(`${name} must be an integer >= 1, got ${value}`);
  return value;
}
