/**
 * The JetStream {@link DurableQueue}: one work-queue stream of commands per service, one shared
 * durable pull consumer with explicit acks, and one stream of dead letters.
 *
 * Names, for service `billing` with the default prefixes:
 *
 * | what | name |
 * | --- | --- |
 * | command subject | `ricochet.durable.billing.<method>` |
 * | command stream | `RICOCHET_billing` (work queue: a command leaves it once settled) |
 * | consumer | `ricochet` on `RICOCHET_billing` (durable, pull, explicit ack) |
 * | dead-letter subject | `ricochet.dead.billing.<method>` |
 * | dead-letter stream | `RICOCHET_billing_DEAD` (limits retention: kept until you remove them) |
 *
 * The server's own `max_deliver` is left unlimited on purpose: the responder counts deliveries and
 * dead-letters a command itself, so a command whose last delivery crashed is still dead-lettered the
 * next time any responder sees it. (With a server-side limit, the server stops delivering it, leaves it
 * in the stream, and announces that only as a core-NATS advisory, lost if nobody listens just then.)
 *
 * @module
 */
import type {
  ConsumerConfig,
  ConsumerMessages,
  JetStreamClient,
  JetStreamManager,
  JsMsg,
  StreamConfig,
} from "@nats-io/jetstream";
import { permissionError } from "./errors.js";
import { oneLine } from "./headers.js";
import { headersOf, RecordHeaders, recordOf } from "./nats-headers.js";
import {
  type DeadLetterReason,
  type DurableQueue,
  type EnqueueReceipt,
  HEADER_REPLY,
  type QueueConsumeOptions,
  type QueueConsumer,
  type QueuedCommand,
  QueueUnavailableError,
} from "./queue.js";

/**
 * A JetStream client from `@nats-io/jetstream` (`jetstream(nc)`). Typed by shape only, so ricochet's
 * published types never import the optional peer.
 */
export interface JetStreamContext {
  publish(...args: never[]): Promise<unknown>;
  jetstreamManager(...args: never[]): Promise<unknown>;
  readonly consumers: object;
}

/** Options for {@link jetstreamQueue}. Give every client and responder of a service the same ones. */
export interface JetStreamQueueOptions {
  /** Commands go to `<subjectPrefix>.<service>.<method>`. @default "ricochet.durable" */
  subjectPrefix?: string;
  /** Dead letters go to `<deadLetterPrefix>.<service>.<method>`. @default "ricochet.dead" */
  deadLetterPrefix?: string;
  /**
   * How long a delivered command may go unacknowledged before the server delivers it again (to any
   * responder). A responder holding a command tells the server it is still working every third of
   * this, so only a responder that died (or stalled this long) loses its commands.
   * @default 30000
   */
  ackWaitMs?: number;
  /** Deliveries of one command that end in its handler's own failure before it is dead-lettered. @default 5 */
  maxDeliver?: number;
  /**
   * How long, from when a command was stored, a command that fails for a transient reason keeps being
   * tried again: a call it makes finds its dependency unavailable (`NO_RESPONDERS`, `UNAVAILABLE`,
   * `OVERLOADED`, `TIMEOUT`), or its handler throws `ctx.retryLater()`. The responder holding it tries
   * again after `retryDelayMs`, doubling up to a minute; these tries do not count toward `maxDeliver`.
   * Past this, it is dead-lettered. @default 86400000 (24 h)
   */
  transientForMs?: number;
  /**
   * How long a failed delivery waits before the next one: this, doubled for each delivery so far,
   * capped at a minute. @default 1000
   */
  retryDelayMs?: number;
  /**
   * The stream's duplicate window: a command published again with the same call id within it is
   * stored once. @default 120000
   */
  duplicateWindowMs?: number;
  /** Replicas of the streams this queue creates (use 3 on a cluster). @default 1 */
  replicas?: number;
  /**
   * Whether to create the streams and the consumer when they are missing. With `false`, an operator
   * manages them (e.g. with the `nats` CLI or Terraform) and ricochet only checks they exist.
   * @default true
   */
  manage?: boolean;
}

const NS_PER_MS = 1_000_000;
/** The consumer all responders of a service share. */
export const CONSUMER_NAME = "ricochet";
/**
 * A pull waits this long for commands before it is sent again. With heartbeats every
 * {@link FETCH_HEARTBEAT_MS}, a pull stranded on a consumer leader that died is noticed after two
 * missed heartbeats and sent again, to the new leader, rather than waiting out the expiry.
 */
const FETCH_EXPIRES_MS = 10_000;
const FETCH_HEARTBEAT_MS = 1_000;
const MAX_RETRY_DELAY_MS = 60_000;

/** The stream names for `service`. */
export function streamNames(service: string): { commands: string; deadLetters: string } {
  return { commands: `RICOCHET_${service}`, deadLetters: `RICOCHET_${service}_DEAD` };
}

/**
 * Creates a {@link DurableQueue} on JetStream, for the `durable` options of clients and responders.
 * The connection stays yours; the streams and the consumer are created on first use (see
 * {@link JetStreamQueueOptions.manage}).
 *
 * @throws RangeError for a bad option, naming it.
 * @example
 * import { jetstream } from "@nats-io/jetstream";
 * const queue = jetstreamQueue(jetstream(nc), { maxDeliver: 5, ackWaitMs: 30_000 });
 */
export function jetstreamQueue(
  context: JetStreamContext,
  options: JetStreamQueueOptions = {},
): DurableQueue {
  const js = context as unknown as JetStreamClient;
  const prefix = subjectPrefix(options.subjectPrefix ?? "ricochet.durable", "subjectPrefix");
  const deadPrefix = subjectPrefix(options.deadLetterPrefix ?? "ricochet.dead", "deadLetterPrefix");
  if (prefix === deadPrefix)
    throw new RangeError("jetstreamQueue(): subjectPrefix and deadLetterPrefix must differ");
  const ackWaitMs = atLeast(options.ackWaitMs ?? 30_000, 1000, "ackWaitMs");
  const maxDeliver = atLeast(options.maxDeliver ?? 5, 1, "maxDeliver");
  const transientForMs = atLeast(options.transientForMs ?? 86_400_000, 0, "transientForMs");
  const retryDelayMs = atLeast(options.retryDelayMs ?? 1000, 0, "retryDelayMs");
  const duplicateWindowMs = atLeast(
    options.duplicateWindowMs ?? 120_000,
    1000,
    "duplicateWindowMs",
  );
  const replicas = atLeast(options.replicas ?? 1, 1, "replicas");
  const manage = options.manage ?? true;

  let manager: Promise<JetStreamManager> | undefined;
  const jsm = () => {
    manager ??= js.jetstreamManager().catch((err: unknown) => {
      manager = undefined;
      if (permissionError(err)) throw denied(err, "use JetStream's API");
      throw new Error(
        `jetstreamQueue(): JetStream is not available on this connection (${String(err)}); run nats-server with -js`,
        { cause: err },
      );
    });
    return manager;
  };

  /** Makes sure a stream exists, creating it when allowed. */
  /** Told of settings of an existing stream or consumer that differ from this queue's options. */
  let warn: (message: string) => void = () => undefined;

  async function ensureStream(config: Partial<StreamConfig> & { name: string }): Promise<void> {
    const m = await jsm();
    try {
      const { config: have } = await m.streams.info(config.name);
      // The existing stream wins: say where it differs from what these options would create.
      if (have.num_replicas !== config.num_replicas) {
        warn(
          `stream ${config.name} has ${have.num_replicas} replica(s), but this queue's replicas option is ${config.num_replicas}; the stream's setting applies (update the stream, or the option)`,
        );
      }
      if (have.duplicate_window !== config.duplicate_window) {
        warn(
          `stream ${config.name} has a duplicate window of ${Math.round((have.duplicate_window ?? 0) / NS_PER_MS)} ms, but this queue's duplicateWindowMs is ${duplicateWindowMs}; the stream's setting applies`,
        );
      }
      return;
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    if (!manage) {
      throw new Error(
        `jetstreamQueue(): stream ${config.name} does not exist and manage is false; create it with subjects ${config.subjects?.join(", ")}, or let ricochet manage it`,
      );
    }
    // Two instances may race to create it: the server accepts an identical config twice.
    await m.streams.add(config);
  }

  const ensured = new Map<string, Promise<void>>();
  /** Both streams of a service, once per queue (again after a failure). */
  function ensureStreams(service: string): Promise<void> {
    let done = ensured.get(service);
    if (done === undefined) {
      const names = streamNames(service);
      const common = {
        storage: "file",
        num_replicas: replicas,
        duplicate_window: duplicateWindowMs * NS_PER_MS,
      } as const;
      done = Promise.all([
        ensureStream({
          name: names.commands,
          subjects: [`${prefix}.${service}.*`],
          retention: "workqueue",
          ...common,
        }),
        ensureStream({
          name: names.deadLetters,
          subjects: [`${deadPrefix}.${service}.*`],
          retention: "limits",
          ...common,
        }),
      ]).then(() => undefined);
      done.catch(() => ensured.delete(service));
      ensured.set(service, done);
    }
    return done;
  }

  /** Makes sure the consumer exists; resolves with its ack wait in ms (an operator's may differ). */
  async function ensureConsumer(service: string): Promise<number> {
    await ensureStreams(service);
    const m = await jsm();
    const stream = streamNames(service).commands;
    try {
      const { config } = await m.consumers.info(stream, CONSUMER_NAME);
      if (config.ack_policy !== "explicit") {
        throw new Error(
          `jetstreamQueue(): consumer ${CONSUMER_NAME} on ${stream} must use explicit acks (it has '${config.ack_policy}')`,
        );
      }
      const wait = config.ack_wait ?? 0;
      if (wait > 0 && wait / NS_PER_MS !== ackWaitMs) {
        warn(
          `consumer ${CONSUMER_NAME} on ${stream} has an ack wait of ${wait / NS_PER_MS} ms, but this queue's ackWaitMs is ${ackWaitMs}; the consumer's setting applies`,
        );
      }
      if (config.max_deliver !== undefined && config.max_deliver > 0) {
        warn(
          `consumer ${CONSUMER_NAME} on ${stream} has max_deliver ${config.max_deliver}; leave it unlimited (-1): ricochet dead-letters after its own maxDeliver (${maxDeliver}), and a server-side limit strands commands instead`,
        );
      }
      return wait > 0 ? wait / NS_PER_MS : ackWaitMs;
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    if (!manage) {
      throw new Error(
        `jetstreamQueue(): consumer ${CONSUMER_NAME} on stream ${stream} does not exist and manage is false; create a durable pull consumer with explicit acks, or let ricochet manage it`,
      );
    }
    const config: Partial<ConsumerConfig> = {
      durable_name: CONSUMER_NAME,
      ack_policy: "explicit",
      ack_wait: ackWaitMs * NS_PER_MS,
      max_deliver: -1,
      filter_subject: `${prefix}.${service}.*`,
      deliver_policy: "all",
    };
    await m.consumers.add(stream, config);
    return ackWaitMs;
  }

  /** Services whose stream has taken a command from this queue. */
  const stored = new Set<string>();

  return {
    maxDeliver,
    transientForMs,
    retryDelayMs,
    async consumers(service) {
      try {
        const info = await (await jsm()).consumers.info(
          streamNames(service).commands,
          CONSUMER_NAME,
        );
        return info.num_waiting > 0 || info.num_ack_pending > 0 ? "active" : "idle";
      } catch (err) {
        if (isNotFound(err)) return "none";
        throw err;
      }
    },
    async enqueue(service, method, data, headers, timeoutMs): Promise<EnqueueReceipt> {
      const subject = `${prefix}.${service}.${method}`;
      const publish = () =>
        js.publish(subject, data, {
          headers: new RecordHeaders({ ...headers }),
          timeout: timeoutMs,
        });
      let ack: Awaited<ReturnType<typeof publish>>;
      const stream = streamNames(service).commands;
      const leaderless = (cause: unknown) =>
        new QueueUnavailableError(
          `JetStream has no leader for stream ${stream} (a leader election after a server was lost?)`,
          { cause },
        );
      try {
        ack = await publish();
      } catch (err) {
        if (!isNoStream(err)) throw denied(err, `publish durable commands to ${subject}`);
        // The stream took commands before: it lost its leader (an election); it was not deleted.
        // Say so without a lookup, which would wait for the election too.
        if (stored.has(service)) throw leaderless(err);
        // No stream captures the subject (JetStream answers "no responders"): create it, once.
        if (!manage) {
          throw new Error(
            `no JetStream stream captures ${subject}; create stream ${stream} with subjects ${prefix}.${service}.*, or let ricochet manage it`,
            { cause: err },
          );
        }
        try {
          await ensureStreams(service);
        } catch (cause) {
          if (!isNoStream(cause) && (cause as { status?: unknown })?.status !== 503) throw cause;
          throw leaderless(cause);
        }
        try {
          ack = await publish();
        } catch (again) {
          // The stream exists (just checked): no responders now means no leader.
          if (isNoStream(again)) {
            ensured.delete(service);
            throw leaderless(again);
          }
          throw denied(again, `publish durable commands to ${subject}`);
        }
      }
      stored.add(service);
      return { duplicate: ack.duplicate, location: `stream ${ack.stream}, seq ${ack.seq}` };
    },
    async consume(service, onCommand, opts): Promise<QueueConsumer> {
      const stream = streamNames(service).commands;
      if (opts.onWarning !== undefined) warn = opts.onWarning;
      let ackWait: number;
      let consumer: PullConsumer;
      try {
        ackWait = await ensureConsumer(service);
        consumer = await js.consumers.get(stream, CONSUMER_NAME);
      } catch (err) {
        throw denied(err, `use stream ${stream} and its consumer ${CONSUMER_NAME}`);
      }
      const env: CommandEnv = {
        js,
        prefixLength: prefix.length + service.length + 2,
        deadSubject: (method) => `${deadPrefix}.${service}.${method}`,
        keepAliveMs: Math.max(1, Math.floor(ackWait / 3)),
        holdMs: opts.holdMs,
        retryDelayMs,
        onAckLost: (command, err) =>
          opts.onError?.(
            new Error(
              `the ack of ${command.subject} (${command.location}) was not confirmed (${String(err)}); it will be delivered again and answered from the dedupe store`,
              { cause: err },
            ),
          ),
      };
      const loop = new FetchLoop(
        consumer,
        opts,
        (m, release) => onCommand(new JetStreamCommand(m, release, env)),
        // After a failed fetch: the stream or consumer may have been deleted; put them back.
        () => ensureConsumer(service).then(() => undefined),
      );
      loop.start();
      return loop;
    },
  };
}

type PullConsumer = Awaited<ReturnType<JetStreamClient["consumers"]["get"]>>;

/** Pulls commands in batches no larger than the room left in the window. */
class FetchLoop implements QueueConsumer {
  #held = 0;
  #stopping = false;
  #batch: ConsumerMessages | undefined;
  #wake: (() => void) | undefined;
  #done: Promise<void> | undefined;

  constructor(
    private readonly consumer: PullConsumer,
    private readonly opts: QueueConsumeOptions,
    private readonly deliver: (m: JsMsg, release: () => void) => void,
    private readonly recover: () => Promise<void>,
  ) {}

  start(): void {
    this.#done = this.#run();
  }

  #release = () => {
    this.#held--;
    this.#wake?.();
  };

  /** Resolves when woken (room in the window, or stop), or after `ms` when given. */
  #sleep(ms?: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = ms === undefined ? undefined : setTimeout(resolve, ms);
      this.#wake = () => {
        clearTimeout(timer);
        this.#wake = undefined;
        resolve();
      };
    });
  }

  async #run(): Promise<void> {
    let failures = 0;
    while (!this.#stopping) {
      const room = this.opts.window - this.#held;
      if (room <= 0) {
        await this.#sleep();
        continue;
      }
      try {
        const batch = await this.consumer.fetch({
          max_messages: room,
          expires: FETCH_EXPIRES_MS,
          idle_heartbeat: FETCH_HEARTBEAT_MS,
        });
        this.#batch = batch;
        failures = 0;
        // Closing ends the iteration below; awaiting close() before iterating would never return.
        if (this.#stopping) void batch.close();
        for await (const m of batch) {
          this.#held++;
          this.deliver(m, this.#release);
        }
      } catch (err) {
        if (this.#stopping) break;
        this.opts.onError?.(err instanceof Error ? err : new Error(String(err)));
        // The server may be restarting: back off, 250 ms doubling to 8 s, then try again.
        await this.#sleep(Math.min(250 * 2 ** failures++, 8000));
        if (!this.#stopping) await this.recover().catch(() => undefined);
      } finally {
        this.#batch = undefined;
      }
    }
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    this.#wake?.();
    void this.#batch?.close();
    await this.#done;
  }
}

interface CommandEnv {
  js: JetStreamClient;
  /** Length of `<prefix>.<service>.`, to read the method off the subject. */
  prefixLength: number;
  deadSubject(method: string): string;
  keepAliveMs: number;
  /** Stop renewing a command held longer than this. */
  holdMs: number;
  retryDelayMs: number;
  /** Told when an ack went unconfirmed. */
  onAckLost?: ((command: QueuedCommand, err: unknown) => void) | undefined;
}

/** How long an ack waits for the server's confirmation. */
const ACK_TIMEOUT_MS = 5_000;

/** A delivered JetStream message as a {@link QueuedCommand}; keeps itself alive until settled. */
class JetStreamCommand implements QueuedCommand {
  readonly status = 0;
  readonly reply: string | undefined;
  readonly method: string;
  readonly delivery: number;
  readonly location: string;
  readonly storedAt: number;
  readonly #record: Record<string, string>;
  #keepAlive: NodeJS.Timeout | undefined;
  #until: number;
  #settled = false;

  constructor(
    private readonly m: JsMsg,
    private readonly release: () => void,
    private readonly env: CommandEnv,
  ) {
    const h = headersOf(m);
    this.#record = h === undefined ? {} : recordOf(h);
    this.reply = this.#record[HEADER_REPLY] || undefined;
    this.method = m.subject.slice(env.prefixLength);
    this.delivery = m.info.deliveryCount;
    this.location = `stream ${m.info.stream}, seq ${m.seq}`;
    this.storedAt = Math.floor(m.info.timestampNanos / 1_000_000);
    this.#until = Date.now() + env.holdMs;
    this.#keepAlive = setInterval(() => {
      if (Date.now() < this.#until) m.working();
      else clearInterval(this.#keepAlive); // held too long: let the server deliver it again
    }, env.keepAliveMs);
  }
  hold(ms: number): void {
    if (this.#settled) return;
    this.#until = Math.max(this.#until, Date.now() + ms);
    this.m.working();
  }
  get subject(): string {
    return this.m.subject;
  }
  get data(): Uint8Array {
    return this.m.data;
  }
  header(name: string): string | undefined {
    return Object.hasOwn(this.#record, name) ? this.#record[name] : undefined;
  }
  headers(): Record<string, string> {
    return { ...this.#record };
  }
  #settle(): boolean {
    if (this.#settled) return false;
    this.#settled = true;
    clearInterval(this.#keepAlive);
    this.release();
    return true;
  }
  ack(): void {
    if (!this.#settle()) return;
    // Confirmed, so a lost ack (its consumer leader died) is at least logged. The command is then
    // delivered again, and answered from the dedupe store without running.
    this.m.ackAck({ timeout: ACK_TIMEOUT_MS }).catch((err: unknown) => {
      this.env.onAckLost?.(this, err);
    });
  }
  retry(): void {
    const delay = Math.min(this.env.retryDelayMs * 2 ** (this.delivery - 1), MAX_RETRY_DELAY_MS);
    if (this.#settle()) this.m.nak(delay);
  }
  async deadLetter(reason: DeadLetterReason): Promise<string> {
    const subject = this.env.deadSubject(this.method);
    const callId = this.#record["Ricochet-Call-Id"] ?? this.#record["Nats-Msg-Id"];
    const headers: Record<string, string> = {
      ...this.#record,
      // The dead-letter stream dedupes on this stored command (a retried dead-lettering is stored
      // once), not on the call id: a republished command that fails again is a new dead letter.
      "Nats-Msg-Id": `${this.m.info.stream}:${this.m.seq}`,
      ...(callId === undefined ? {} : { "Ricochet-Call-Id": callId }),
      "Ricochet-Dead-Code": reason.code,
      "Ricochet-Dead-Reason": oneLine(reason.message),
      "Ricochet-Deliveries": String(this.delivery),
      "Ricochet-Dead-From": `${this.subject} ${this.location}`,
    };
    try {
      await this.env.js.publish(subject, this.m.data, { headers: new RecordHeaders(headers) });
    } catch (err) {
      // Not dead-lettered: leave it to be delivered again rather than drop it.
      this.retry();
      throw err;
    }
    this.ack();
    return subject;
  }
}

/**
 * `err`, explained when the server refused this connection something for want of permission (and
 * keeping its name and subject, so callers can still tell).
 */
function denied(err: unknown, what: string): unknown {
  const refused = permissionError(err);
  if (refused === undefined || refused.message.startsWith("jetstreamQueue():")) return err;
  const { subject, operation } = refused;
  const explained = new Error(
    `jetstreamQueue(): this connection may not ${what}: the server refused ${operation === "publish" ? "publish to" : "subscribe to"} ${subject ?? "a subject"} (${refused.message}); grant the user the JetStream permissions in docs/security.md`,
    { cause: err },
  );
  explained.name = "PermissionViolationError";
  return Object.assign(explained, { subject, operation });
}

function isNotFound(err: unknown): boolean {
  const e = err as { status?: unknown; code?: unknown; name?: unknown };
  return e?.status === 404 || e?.code === 10059 || e?.code === 10014;
}

/** JetStream answers a publish no stream captures with "no responders" (nats.js: JetStreamNotEnabled). */
function isNoStream(err: unknown): boolean {
  return (
    err instanceof Error &&
    (err.name === "JetStreamNotEnabled" || /no responders|not enabled/i.test(err.message))
  );
}

function subjectPrefix(value: string, name: string): string {
  if (!/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(value))
    throw new RangeError(
      `jetstreamQueue(): ${name} '${value}' must be dot-separated subject tokens`,
    );
  return value;
}

function atLeast(value: number, min: number, name: string): number {
  if (!Number.isInteger(value) || value < min)
    throw new RangeError(`jetstreamQueue(): ${name} must be an integer >= ${min}, got ${value}`);
  return value;
}
