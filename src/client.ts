/**
 * The typed client: validate → encode → send and await with one deadline and safe retries → decode →
 * validate. All calls share one wildcard reply subscription; each call keeps one key (the reply
 * token, or the key inside its call token) and one id across its attempts, so a late reply to attempt 1
 * still completes the call during attempt 2.
 *
 * @module
 */
import { nanoid } from "nanoid";
import { type Logger, pino } from "pino";
import { Call, cancelledError, type RetryInfo } from "./call.js";
import { CHILD_ID } from "./context.js";
import type {
  AnyContract,
  AnyMethod,
  CallError,
  InferRequest,
  InferResponse,
  MethodName,
} from "./contract.js";
import { isRpcError, RpcError } from "./errors.js";
import { type ClientMiddleware, compose, type OutgoingCall } from "./middleware.js";
import {
  CALL_TOKEN_MARKER,
  callTokenPrefix,
  encodeBody,
  HEADER_ATTEMPT,
  HEADER_CALL_ID,
  HEADER_ERROR,
  HEADER_ERROR_CODE,
  HEADER_PROGRESS,
  HEADER_TIMEOUT,
  isTokenSafe,
  isValidCallId,
  MAX_BUDGET_MS,
  MAX_CALL_ID_LENGTH,
  methodSubject,
} from "./protocol.js";
import { type RetryOptions, resolveRetry } from "./retry.js";
import { KeyedSlots } from "./slots.js";
import { isValidHeader } from "./transport/headers.js";
import { type DurableQueue, HEADER_REPLY } from "./transport/queue.js";
import type { Transport, TransportMessage, TransportSubscription } from "./transport/types.js";
import { compileMethod, describeIssues, type Validation, validate } from "./validate.js";

/** Durable calls: which queue stores their commands, and which methods are durable by default. */
export interface DurableClientOptions<C extends AnyContract = AnyContract> {
  /** The queue the commands are stored on, e.g. {@link jetstreamQueue}; responders consume it. */
  queue: DurableQueue;
  /** Methods whose calls are durable unless a call says `durable: false`. @default [] */
  methods?: readonly MethodName<C>[];
}

/** Options for {@link createClient}. */
export interface ClientOptions<C extends AnyContract = AnyContract> {
  /** The bus: {@link natsTransport} or {@link memoryTransport}. */
  transport: Transport;
  /**
   * The whole call's deadline in milliseconds, retries included. Each call may override it.
   * @default 5000
   */
  timeoutMs?: number;
  /** How calls are retried. Each call may override it. @default { attempts: 3, baseMs: 50, maxMs: 1000 } */
  retry?: RetryOptions;
  /** A pino logger; ricochet logs through a child of it. @default a silent logger */
  logger?: Logger;
  /** Middleware run around every call, the first outermost. @default [] */
  use?: ClientMiddleware[];
  /** Told after each retry is sent (for metrics). */
  onRetry?: (info: RetryInfo) => void;
  /**
   * Lets calls go through a durable queue (JetStream) instead of core NATS, so they survive every
   * responder being down: the command is stored first, then run when a responder takes it.
   * @default undefined — core calls only
   */
  durable?: DurableClientOptions<C>;
  /**
   * How a core call carries its metadata (call id, attempt, budget and attempt window):
   *
   * - `"compact"`: in the last token of its reply subject (`<inbox>.rc1~<key>~<id>~<attempt>~<budgetMs>~<windowMs>`),
   *   and the request goes without headers (a plain NATS `PUB`, the cheapest message NATS has) whenever
   *   nothing else needs headers: no `headers` option and none added by middleware (tracing adds
   *   `traceparent`), and an id of 1 to 64 characters of `[A-Za-z0-9_-]` (every generated nanoid is).
   *   Any other call sends the headers, as `"headers"` does.
   * - `"headers"`: every call sends `Nats-Msg-Id`, `Ricochet-Timeout`, `Ricochet-Progress` (and
   *   `Ricochet-Attempt` from the second attempt) as headers, under a plain reply subject. Choose it
   *   to read the calls with `nats sub`, or when a responder that is not ricochet reads those headers
   *   but not call tokens (docs/protocol.md, "Call tokens").
   *
   * Ricochet responders accept both, from any version of this protocol. Durable calls always use
   * headers (JetStream needs `Nats-Msg-Id`).
   * @default "compact"
   */
  wire?: "compact" | "headers";
}

/** Options for one call. */
export interface CallOptions {
  /** This call's deadline in milliseconds, retries included. @default the client's `timeoutMs` */
  timeoutMs?: number;
  /** Aborting it rejects the call at once with `CANCELLED` and stops its retries. */
  signal?: AbortSignal;
  /**
   * The call id, which is also the idempotency key: calls with the same id to the same method run the
   * handler once on a deduplicating responder. Kept across this call's retries.
   * @default derived from `parent` when that is a handler's `ctx` (see {@link CallOptions.parent}),
   * else a new nanoid
   */
  id?: string;
  /** Overrides the client's retry options for this call. */
  retry?: RetryOptions;
  /**
   * The context of the handler this call is made from (its `ctx`): the call then ends no later than
   * the parent's deadline and is cancelled with it.
   *
   * When `parent` is a ricochet handler context and no `id` is given, the call's id is derived from
   * the parent's call id and the call's place in that handler: `<parent id>/<service>.<method>/<n>`,
   * where `n` counts, from 1, the calls this execution of the handler made to the same method with
   * it as `parent`, explicit ids included (e.g. `order-42/inventory.reserve/1`). So when the parent
   * runs again with the same id (a durable redelivery, a retry after a crash), its child calls carry
   * the same ids as before, and deduplicating responders answer them with their stored replies
   * instead of running them twice. This holds only if the handler makes its child calls in a
   * deterministic order (and with the same requests, or the child answers `ID_REUSED`). An explicit
   * `id` overrides the derived one; a plain `{ deadline, signal }` object gets a new nanoid.
   */
  parent?: { readonly deadline: number; readonly signal: AbortSignal };
  /** Extra headers to send, e.g. for authentication. Names must not clash with ricochet's own. */
  headers?: Record<string, string>;
  /**
   * Store this call as a durable command (needs the client's `durable` option) instead of sending a
   * core request, or (`false`) send a core request for a method that is durable by default. A durable
   * call waits for its result until `timeoutMs`; if that passes, the command is still stored and runs
   * later, and the TIMEOUT says so: call again with the same `id` for its result.
   * @default whether the method is in the client's `durable.methods`
   */
  durable?: boolean;
}

/** A typed async function per contract method, plus {@link Client.close}. */
export type Client<C extends AnyContract> = {
  readonly [K in MethodName<C>]: ClientMethod<C, K>;
} & {
  /** Settles every pending call with `CANCELLED`, then stops listening for replies. Idempotent. */
  close(): Promise<void>;
};

/** One method of a {@link Client}: call it, or call its `safe` form. */
export interface ClientMethod<C extends AnyContract, K extends MethodName<C>> {
  /** Resolves with the response, or rejects with a {@link CallError} of this method. */
  (input: InferRequest<C, K>, options?: CallOptions): Promise<InferResponse<C, K>>;
  /**
   * The same call, settled as a pair instead of a rejection: `[undefined, value]`, or `[error,
   * undefined]` with `error` typed by this method's contract, so branching on its code types its
   * `details` without a cast.
   *
   * @example
   * const [err, order] = await client.place.safe({ sku: "tea" });
   * if (err?.code === "OUT_OF_STOCK") console.log(err.details.available);
   */
  safe(
    input: InferRequest<C, K>,
    options?: CallOptions,
  ): Promise<
    [error: undefined, value: InferResponse<C, K>] | [error: CallError<C, K>, value: undefined]
  >;
}

/** @internal Counts a test reads to prove that settled calls leave nothing behind. */
export const CLIENT_INTERNALS = Symbol.for("ricochet.client.internals");

/**
 * Creates a typed client for `contract`. Every call resolves to the method's response or rejects with
 * {@link RpcError}: `TIMEOUT`, `NO_RESPONDERS`, `INVALID_REQUEST`, `INVALID_RESPONSE`, `CANCELLED`,
 * `INTERNAL`, `OVERLOADED`, `UNAVAILABLE`, `ID_REUSED`, `PAYLOAD_TOO_LARGE`, `REPLY_DROPPED`, `DEAD_LETTERED` (durable calls), or a contract error code.
 *
 * @throws TypeError or RangeError for a bad option, naming it.
 * @example
 * const client = createClient(billing, { transport: memoryTransport(), timeoutMs: 2000 });
 * const { chargeId } = await client.charge({ accountId: "a1", amountCents: 5 });
 */
export function createClient<C extends AnyContract>(
  contract: C,
  options: ClientOptions<C>,
): Client<C> {
  const { transport } = options;
  if (transport === undefined) throw new TypeError("createClient(): `transport` is required");
  const timeoutMs = checkTimeout(options.timeoutMs ?? 5000, "timeoutMs");
  const retry = resolveRetry(options.retry);
  const use = [...(options.use ?? [])];
  const wire = options.wire ?? "compact";
  if (wire !== "compact" && wire !== "headers")
    throw new TypeError(`createClient(): wire must be "compact" or "headers", got ${String(wire)}`);
  const queue = options.durable?.queue;
  const durableByDefault = new Set<string>(options.durable?.methods ?? []);
  if (options.durable !== undefined && queue === undefined)
    throw new TypeError("createClient(): `durable.queue` is required, e.g. jetstreamQueue(js)");
  for (const name of durableByDefault) {
    if (!Object.hasOwn(contract.methods, name))
      throw new TypeError(
        `createClient(): durable.methods names '${name}', which ${contract.service} does not have`,
      );
  }
  const log = (options.logger ?? pino({ level: "silent" })).child({
    lib: "ricochet",
    service: contract.service,
    role: "client",
  });

  const pending = new KeyedSlots<Call>();
  let replySub: TransportSubscription | undefined;
  let seq = 0;
  let closed = false;

  const onReply = (msg: TransportMessage) => {
    const call = pending.get(callKey(msg.subject, inboxLength));
    if (call) call.onReply(msg);
    else log.debug({ subject: msg.subject }, "reply for a call that already settled; dropped");
  };
  // One abort listener per signal, however many calls share it (a request-scoped signal often does).
  const watched = new WeakMap<AbortSignal, { calls: Set<Call>; listener: () => void }>();
  const watch = (signal: AbortSignal, call: Call) => {
    let entry = watched.get(signal);
    if (entry === undefined) {
      const calls = new Set<Call>();
      const listener = () => {
        for (const c of [...calls]) c.cancel(signal.reason);
      };
      entry = { calls, listener };
      watched.set(signal, entry);
      signal.addEventListener("abort", listener, { once: true });
    }
    entry.calls.add(call);
  };
  const unwatch = (signal: AbortSignal, call: Call) => {
    const entry = watched.get(signal);
    if (entry === undefined) return;
    entry.calls.delete(call);
    if (entry.calls.size === 0) {
      signal.removeEventListener("abort", entry.listener);
      watched.delete(signal);
    }
  };
  const env = { transport, log, pending, watch, unwatch, onRetry: options.onRetry };
  let inbox: string | undefined;
  let inboxLength = 0;
  let unwatchReconnects: (() => void) | undefined;
  const listen = (): string => {
    if (inbox === undefined) {
      inbox = transport.createInbox();
      inboxLength = inbox.length + 1;
      // Replies sent while the connection was down are lost: durable calls waiting for theirs ask again.
      const unwatch = [
        transport.onReconnect?.(() => {
          for (const call of pending.values()) call.askAgain();
        }),
        // The server says so at once: calls to a subject this user may not publish to fail now.
        transport.onDenied?.((denied) => {
          if (denied.operation !== "publish") return;
          for (const call of pending.values()) {
            // A durable call already stored waits for its result, whatever a later ask-again met.
            if (call.spec.scope.subject === denied.subject && !call.waitsForStored) {
              call.deny(`publish to ${denied.subject}`, denied.message);
            }
          }
        }),
      ];
      unwatchReconnects = () => {
        for (const u of unwatch) u?.();
      };
      const replies = `${inbox}.*`;
      replySub = transport.subscribe(replies, onReply, {
        onError: (err) => {
          log.error({ err }, "reply subscription failed");
          if (err.name !== "PermissionViolationError") return;
          // No reply could ever arrive: fail every call now, and subscribe again for the next one.
          inbox = undefined;
          unwatchReconnects?.();
          for (const call of pending.values()) {
            call.deny(`subscribe to its reply subject ${replies}`, err.message);
          }
        },
      });
    }
    return inbox;
  };
  const closedError = (subject: string, callId: string) =>
    new RpcError("CANCELLED", `${subject}: the client is closed; create a new one`, {
      callId,
      subject,
    });

  /** Checks the options and the request, then starts the call. Throws for anything wrong up front. */
  function call(
    name: string,
    subject: string,
    m: AnyMethod,
    input: unknown,
    opts: CallOptions = {},
    picked?: string,
  ): Promise<unknown> {
    const id = picked ?? callId(opts, subject);
    // An id of nanoid's is valid and token-safe by construction; only ids from outside are checked.
    const made = picked === undefined && opts.id === undefined && opts.parent === undefined;
    if (!made && (typeof id !== "string" || !isValidCallId(id))) {
      throw new TypeError(
        `${subject}: call option id must be 1 to ${MAX_CALL_ID_LENGTH} characters, without control characters or surrounding spaces`,
      );
    }
    if (closed) throw closedError(subject, id);
    const policy =
      opts.retry === undefined ? retry : resolveRetry(opts.retry, retry, "call option retry");
    let deadline =
      Date.now() +
      (opts.timeoutMs === undefined
        ? timeoutMs
        : checkTimeout(opts.timeoutMs, "call option timeoutMs"));
    const parent = opts.parent;
    if (parent) deadline = Math.min(deadline, parent.deadline);
    const signals: AbortSignal[] = [];
    if (opts.signal) signals.push(opts.signal);
    if (parent) signals.push(parent.signal);
    for (const s of signals) if (s.aborted) throw cancelledError(subject, id, s.reason);
    const own = opts.headers === undefined ? undefined : checkHeaders(opts.headers, subject);
    const scope = { method: m, subject, callId: id };
    let stored: { queue: DurableQueue; service: string; method: string } | undefined;
    if (opts.durable ?? durableByDefault.has(name)) {
      if (queue === undefined) {
        throw new TypeError(
          `${subject}: call option durable needs the client's \`durable: { queue }\` option (e.g. jetstreamQueue(js))`,
        );
      }
      stored = { queue, service: contract.service, method: name };
    }
    // Metadata in the reply subject, and no headers, unless something needs headers anyway.
    const compact =
      wire === "compact" && stored === undefined && !hasKeys(own) && (made || isTokenSafe(id));
    let headers: Record<string, string>;
    if (compact) headers = NO_HEADERS;
    else {
      headers = own ?? {};
      headers[HEADER_CALL_ID] = id;
    }
    const send = (value: unknown): Promise<unknown> => {
      const body = encodeRequest(value, subject, id);
      // close() may have run while an async schema validated the request.
      if (closed) throw closedError(subject, id);
      const token = (++seq).toString(36);
      const prefix = listen();
      const reply = `${prefix}.${token}`;
      return new Call(
        {
          scope,
          policy,
          deadline,
          signals,
          body,
          headers,
          reply,
          token,
          compact: compact ? `${prefix}.${callTokenPrefix(token, id)}` : undefined,
          durable: stored,
        },
        env,
      ).start();
    };
    // Most schemas validate synchronously; only async refinements pay for a promise here.
    const checked = validate(m.request, input);
    return checked instanceof Promise
      ? checked.then((c) => send(checkedRequest(c, subject, id)))
      : send(checkedRequest(checked, subject, id));
  }

  function encodeRequest(value: unknown, subject: string, callId: string): Uint8Array {
    let body: Uint8Array;
    try {
      body = encodeBody(value);
    } catch (err) {
      const message = `${subject}: the request cannot be encoded as JSON, nothing sent: ${String(err)}`;
      throw new RpcError("INVALID_REQUEST", message, { callId, subject, cause: err });
    }
    if (body.length > transport.maxPayload) {
      throw new RpcError(
        "PAYLOAD_TOO_LARGE",
        `${subject}: request of ${body.length} bytes exceeds the server's max_payload of ${transport.maxPayload}; send less, or raise max_payload`,
        { callId, subject },
      );
    }
    return body;
  }

  const client: Record<string | symbol, unknown> = {};
  for (const [name, m] of Object.entries(contract.methods)) {
    if (name === "close")
      throw new TypeError(
        "createClient(): a method named 'close' clashes with client.close(); rename it",
      );
    const subject = methodSubject(contract.service, name);
    // Compiled now, not on the first call (see compiled()).
    compileMethod(m);
    /** `picked`: the id, when the caller picked it already (picking one from a parent counts a call). */
    const direct = (input: unknown, opts?: CallOptions, picked?: string) => {
      try {
        return call(name, subject, m, input, opts, picked);
      } catch (err) {
        return Promise.reject(err);
      }
    };
    client[name] =
      use.length === 0
        ? (input: unknown, opts?: CallOptions) => direct(input, opts)
        : (input: unknown, opts: CallOptions = {}) => {
            const outgoing: OutgoingCall = {
              service: contract.service,
              method: name,
              subject,
              // Picked here, once for both paths, so a parent's count of its calls advances once.
              id: callId(opts, subject),
              input,
              headers: { ...opts.headers },
            };
            const send = () => direct(input, { ...opts, headers: outgoing.headers }, outgoing.id);
            return compose(use, [outgoing], send);
          };
    const invoke = client[name] as (input: unknown, opts?: CallOptions) => Promise<unknown>;
    // A call settles with an RpcError (a CallError of this method); anything else is a mistake in
    // the calling code (a bad option), which still throws.
    (invoke as unknown as { safe: unknown }).safe = (input: unknown, opts?: CallOptions) =>
      invoke(input, opts).then(
        (value) => [undefined, value],
        (err: unknown) => (isRpcError(err) ? [err, undefined] : Promise.reject(err)),
      );
  }
  client.close = async () => {
    if (closed) return;
    closed = true;
    unwatchReconnects?.();
    for (const p of pending.values()) {
      p.settle({
        ok: false,
        error: new RpcError("CANCELLED", "the client was closed before the call settled"),
      });
    }
    await replySub
      ?.drain()
      .catch((err) => log.warn({ err }, "could not drain the reply subscription"));
  };
  Object.defineProperty(client, CLIENT_INTERNALS, { value: () => ({ pending: pending.size }) });
  return Object.freeze(client) as Client<C>;
}

/** The value to send when `checked` passed; else the `INVALID_REQUEST` the call rejects with. */
function checkedRequest(checked: Validation, subject: string, callId: string): unknown {
  if (checked.ok) return checked.value;
  const message = `${subject}: invalid request, nothing sent: ${describeIssues(checked.issues)}`;
  throw new RpcError("INVALID_REQUEST", message, {
    callId,
    subject,
    details: { issues: checked.issues },
  });
}

/** Headers of a compact call: none. Frozen: no code path may add to them. */
const NO_HEADERS: Record<string, string> = Object.freeze({}) as Record<string, string>;

/**
 * The key of the call a reply belongs to, from its subject: the token after the inbox (`from` is
 * where it starts), or, in a call token (`rc1~<key>~…`), its key. The same for every attempt.
 */
function callKey(subject: string, from: number): string {
  if (!subject.startsWith(CALL_TOKEN_MARKER, from)) return subject.slice(from);
  const start = from + CALL_TOKEN_MARKER.length;
  const end = subject.indexOf("~", start);
  return end < 0 ? "" : subject.slice(start, end);
}

/** Whether `record` is defined and has at least one key. */
function hasKeys(record: Record<string, string> | undefined): boolean {
  for (const _ in record) return true;
  return false;
}

/**
 * A call's id: the `id` option, else one derived from `parent` when it is a handler context, else a
 * new nanoid. Run it once per call: a handler context counts each call made with it as its parent.
 */
function callId(opts: CallOptions, subject: string): string {
  // The parent counts every call made with it, an explicit id too, so `n` is the call's place.
  const derived = childId(opts.parent, subject);
  return opts.id ?? derived ?? nanoid();
}

/** The next child id of a ricochet handler context; `undefined` for any other parent (or none). */
function childId(parent: CallOptions["parent"], subject: string): string | undefined {
  const derive = (parent as { [CHILD_ID]?: unknown } | undefined)?.[CHILD_ID];
  return typeof derive === "function" ? (derive.call(parent, subject) as string) : undefined;
}

function checkTimeout(value: number, name: string): number {
  if (!Number.isFinite(value) || value <= 0 || value > MAX_BUDGET_MS) {
    throw new RangeError(
      `${name} must be a number of milliseconds in (0, ${MAX_BUDGET_MS}], got ${value}`,
    );
  }
  return value;
}

const RESERVED = new Set(
  [
    HEADER_CALL_ID,
    HEADER_ATTEMPT,
    HEADER_TIMEOUT,
    HEADER_ERROR,
    HEADER_ERROR_CODE,
    HEADER_PROGRESS,
    HEADER_REPLY,
  ].map((h) => h.toLowerCase()),
);

function checkHeaders(headers: Record<string, string>, subject: string): Record<string, string> {
  for (const [name, value] of Object.entries(headers)) {
    if (!isValidHeader(name, value)) {
      throw new TypeError(
        `${subject}: call option headers: invalid header ${JSON.stringify(name)}: ${JSON.stringify(value)}; names are tokens, values one line`,
      );
    }
    if (RESERVED.has(name.toLowerCase())) {
      throw new TypeError(
        `${subject}: call option headers may not set '${name}'; ricochet sets it (use the id option for Nats-Msg-Id)`,
      );
    }
  }
  return { ...headers };
}
