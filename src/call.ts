/**
 * One call in flight: its attempts, its single deadline, its backoff, and its one settlement.
 * Every attempt's reply subject names the same call (the same subject, or call tokens with the same
 * key), so a late reply to an earlier attempt completes it.
 *
 * @module
 */
import type { Logger } from "pino";
import { RpcError } from "./errors.js";
import {
  attemptToken,
  HEADER_ATTEMPT,
  HEADER_PROGRESS,
  HEADER_TIMEOUT,
  MAX_BUDGET_MS,
  parseCallToken,
} from "./protocol.js";
import { type ReplyOutcome, type ReplyScope, readReply } from "./reply.js";
import { backoffMs, type RetryPolicy } from "./retry.js";
import type { KeyedSlots } from "./slots.js";
import { PayloadTooLargeError, permissionError } from "./transport/errors.js";
import {
  type DurableQueue,
  type EnqueueReceipt,
  HEADER_REPLY,
  QueueUnavailableError,
} from "./transport/queue.js";
import type { Transport, TransportMessage } from "./transport/types.js";

/** The least time left worth another try after a no-responders answer, ms. */
const MIN_LAST_TRY_MS = 10;
/** How long before a stored durable call's deadline it asks whether anything consumes it, at most, ms. */
const CONSUMERS_ASK_MS = 500;
/** The least backoff range after a no-responders answer, ms (even with `baseMs: 0`). */
const MIN_UNHEARD_DELAY_MS = 10;

/** A call the client has validated and encoded. */
export interface CallSpec {
  readonly scope: ReplyScope;
  readonly policy: RetryPolicy;
  /** Epoch ms. */
  readonly deadline: number;
  readonly signals: readonly AbortSignal[];
  readonly body: Uint8Array;
  /**
   * Headers for every attempt: the call id and the caller's own. The budget is added per attempt.
   * Unused (and frozen) for a compact call.
   */
  readonly headers: Record<string, string>;
  /** This call's reply subject, under the client's inbox. */
  readonly reply: string;
  /** The key of this call in the client's table of pending calls. */
  readonly token: string;
  /**
   * Set for a call that carries its metadata in a call token instead of headers: its reply subject up
   * to the per-attempt fields (`<inbox>.rc1~<key>~<id>~`). Each attempt appends
   * `<attempt>~<budgetMs>~<windowMs>` and is sent without headers.
   */
  readonly compact?: string | undefined;
  /** Set for a durable call: the command is stored on this queue instead of sent as a request. */
  readonly durable?: { queue: DurableQueue; service: string; method: string } | undefined;
}

/** A retry that was sent: its attempt number, and why the previous attempt failed. */
export interface RetryInfo {
  subject: string;
  id: string;
  /**
   * The attempt just sent (2 for the first retry). An attempt that found no responder does not count,
   * so its retry is sent under the same number.
   */
  attempt: number;
  /** What ended the previous attempt: `TIMEOUT` (no answer in its share), or the refusal's code. */
  code: string;
  delayMs: number;
}

/** What a call needs from its client. */
export interface CallEnv {
  readonly transport: Transport;
  readonly log: Logger;
  /** The client's table of pending calls, by token: replies and close() reach calls through it. */
  readonly pending: KeyedSlots<Call>;
  /** Cancels `call` when `signal` aborts (one listener per signal and client, however many calls). */
  watch(signal: AbortSignal, call: Call): void;
  /** Stops watching, once `call` settled. */
  unwatch(signal: AbortSignal, call: Call): void;
  /** Told after each retry is sent. */
  readonly onRetry?: ((info: RetryInfo) => void) | undefined;
}

/**
 * A call from the first send to its one settlement.
 */
type Phase = "attempt" | "backoff" | "lingering";

/**
 * A call from the first send to its one settlement, as a small state machine:
 *
 * - `attempt`: a request is out; the timer is its share of the remaining budget (its window). A
 *   progress message from the responder holding the call restarts the window: a live instance is
 *   running it, and a retry would only run it again elsewhere.
 * - `backoff`: waiting before the next attempt.
 * - `lingering`: attempts are used up but one went unanswered, so its late reply may still come.
 *
 * The client cancels it when a caller's signal aborts, and it passes itself to its timer, so a call
 * allocates no closures beyond its promise's.
 */
export class Call {
  settled = false;
  readonly promise: Promise<unknown>;
  #resolve!: (value: unknown) => void;
  #reject!: (reason: unknown) => void;
  /** The one timer a call has at a time. */
  #timer: NodeJS.Timeout | undefined;
  #phase: Phase = "attempt";
  #attempt = 0;
  /**
   * The earliest attempt that may still answer for the current one: the attempt just sent, or an
   * earlier one whose holder has since sent a progress message. A retryable refusal of an attempt
   * before it no longer stands for anything (compact calls only: their tokens carry the attempt).
   */
  #live = 0;
  /** A retryable refusal (no responders, overloaded) of the current attempt. */
  #refusal: RpcError | undefined;
  /** Whether some attempt ended with no answer at all (its handler may still be running). */
  #unanswered = false;
  /** The current attempt's window, ms: how long it waits for an answer or a progress message. */
  #window = 0;
  /** Why the next attempt is a retry, reported once it is sent. */
  #retry: { code: string; delayMs: number } | undefined;
  /** For a durable call until it is stored (or found to be another caller's): its queue. */
  #durable: CallSpec["durable"];
  /** Where the durable command is stored, once it is. */
  #stored: string | undefined;
  /** A store went unconfirmed (timed out): the command may be stored, and its reply may come. */
  #maybeStored = false;
  /** Attempts in a row that found no responder (or no JetStream leader): they do not count. */
  #unheard = 0;
  /** For a stored durable call near its deadline: whether any responder consumes its commands. */
  #consumers: "none" | "idle" | "active" | "asked" | undefined;
  readonly #started = Date.now();

  constructor(
    readonly spec: CallSpec,
    readonly env: CallEnv,
  ) {
    this.promise = new Promise((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    this.#durable = spec.durable;
  }

  /** Starts the call; returns its promise. */
  start(): Promise<unknown> {
    const { signals, token } = this.spec;
    this.env.pending.set(token, this);
    for (const s of signals) this.env.watch(s, this);
    // A signal that aborted while the request was being validated fired before we listened.
    const aborted = signals.find((s) => s.aborted);
    if (aborted) this.cancel(aborted.reason);
    else this.#send();
    return this.promise;
  }

  /** Whether this is a durable call whose command is (or may be) stored, waiting for its result. */
  get waitsForStored(): boolean {
    return this.#phase === "lingering" && (this.#stored !== undefined || this.#maybeStored);
  }

  /** The server refused a publish or subscription this call needs: settle with PERMISSION_DENIED. */
  deny(what: string, serverSays: string): void {
    const { subject, callId } = this.spec.scope;
    const message = `${subject}: permission denied: this connection may not ${what} (the server said: ${serverSays}; call ${callId}); grant it in the server's authorization for this user (see docs/security.md)`;
    this.settle({
      ok: false,
      error: new RpcError("PERMISSION_DENIED", message, { callId, subject }),
    });
  }

  cancel(reason: unknown): void {
    const { subject, callId } = this.spec.scope;
    this.settle({ ok: false, error: cancelledError(subject, callId, reason) });
  }

  onReply(msg: TransportMessage): void {
    if (msg.data.length === 0 && msg.header(HEADER_PROGRESS) !== undefined) {
      this.#onProgress(msg);
      return;
    }
    const outcome = readReply(this.spec.scope, msg);
    if (outcome instanceof Promise) void outcome.then((o) => this.#onOutcome(o, msg));
    else this.#onOutcome(outcome, msg);
  }

  settle(outcome: ReplyOutcome): void {
    if (this.settled) return;
    this.settled = true;
    clearTimeout(this.#timer);
    this.env.pending.delete(this.spec.token);
    for (const s of this.spec.signals) this.env.unwatch(s, this);
    if (outcome.ok) this.#resolve(outcome.value);
    else this.#reject(outcome.error);
  }

  #onOutcome(outcome: ReplyOutcome, msg: TransportMessage): void {
    if (this.settled) return;
    if (outcome.ok || !outcome.error.retryable) {
      this.settle(outcome);
      return;
    }
    // A retryable refusal ends the current attempt early. One that arrives during the backoff or
    // while lingering belongs to an earlier attempt and changes nothing; so does one sent to an
    // earlier attempt's call token (a late OVERLOADED from attempt 1 must not cut attempt 2 short).
    if (this.#phase !== "attempt" || this.#isEarlierAttempt(msg)) return;
    clearTimeout(this.#timer);
    this.#refusal = outcome.error;
    // With retries off (`attempts: 1`), nobody listening fails at once.
    if (outcome.error.code === "NO_RESPONDERS" && this.spec.policy.attempts > 1) {
      this.#unheardRetry();
    } else this.#next();
  }

  /**
   * Whether `msg` came to the call token of an attempt before the earliest one that still answers for
   * the call. Only compact calls can tell: a call with headers has one reply subject for all its
   * attempts.
   */
  #isEarlierAttempt(msg: TransportMessage): boolean {
    const attempt = this.#attemptOf(msg);
    return attempt !== undefined && attempt < this.#live;
  }

  /** The attempt `msg` came to, from the call token of its subject; `undefined` for headers calls. */
  #attemptOf(msg: TransportMessage): number | undefined {
    if (this.spec.compact === undefined) return undefined;
    const token = parseCallToken(msg.subject);
    return token !== undefined && "attempt" in token ? token.attempt : undefined;
  }

  /**
   * Nobody received the attempt (no responder subscribed, or JetStream had no leader): it cannot
   * have run, so it does not count against the attempts. Try again with backoff until the deadline,
   * which rides out a restart of the only responder or a leader election.
   */
  #unheardRetry(): void {
    this.#attempt--;
    this.#unheard++;
    const left = this.spec.deadline - Date.now();
    if (left <= 0) {
      this.#fail();
      return;
    }
    // Equal jitter: at least half the range (and a few ms), so an outage is not polled in a tight loop.
    const ceiling = Math.max(
      MIN_UNHEARD_DELAY_MS,
      Math.min(this.spec.policy.maxMs, this.spec.policy.baseMs * 2 ** (this.#unheard - 1)),
    );
    const delayMs = Math.ceil(ceiling / 2 + (Math.random() * ceiling) / 2);
    if (left - delayMs < MIN_LAST_TRY_MS) {
      // Too little time for another try to be answered (its window would end before a no-responders
      // status could arrive, turning the real reason into TIMEOUT). An earlier attempt that went
      // unanswered may still reply: wait for it until the deadline; otherwise settle now.
      if (this.#unanswered) {
        this.#phase = "lingering";
        this.#timer = setTimeout(onTimer, Math.max(0, left), this);
      } else this.#fail();
      return;
    }
    const code = this.#refusal?.code ?? "NO_RESPONDERS";
    if (this.#unheard === 1) {
      const { callId, subject } = this.spec.scope;
      this.env.log.warn(
        { callId, subject, delayMs, code },
        "no responder received the attempt; retrying until one does or the deadline passes",
      );
    }
    this.#retry = { code, delayMs };
    this.#phase = "backoff";
    this.#timer = setTimeout(onTimer, delayMs, this);
  }

  /**
   * Asks again for a stored durable command's result, with a core request under the same id: its
   * reply may have been lost while the connection was down. A responder answers from its dedupe
   * store, joins the execution in flight, or runs the command then (the queued copy is then answered
   * from the store without running again).
   */
  askAgain(): void {
    if (this.settled || this.#phase !== "lingering") return;
    if (this.#stored === undefined && !this.#maybeStored) return;
    const { deadline, headers, body, reply, scope } = this.spec;
    const remaining = Math.floor(deadline - Date.now());
    if (remaining <= 0) return;
    const again: Record<string, string> = { ...headers };
    delete again[HEADER_REPLY];
    again[HEADER_TIMEOUT] = String(Math.min(remaining, MAX_BUDGET_MS));
    try {
      this.env.transport.publish(scope.subject, body, { reply, headers: again });
      this.env.log.debug(
        { callId: scope.callId, subject: scope.subject },
        "reconnected; asking again for a durable call's result",
      );
    } catch {
      // The connection is down again: the next reconnect asks again.
    }
  }

  /**
   * A responder still holds the call: wait another window for it, rather than retry onto another
   * instance, where it would run again. One that arrives during a backoff cancels the retry.
   */
  #onProgress(msg: TransportMessage): void {
    // Only a core request's attempt has a window to extend (a durable call waits for its store).
    if (this.settled || this.#phase === "lingering" || this.#durable !== undefined) return;
    if (this.#window === 0) return;
    const { callId, subject } = this.spec.scope;
    if (this.env.log.isLevelEnabled("debug")) {
      const instance = msg.header(HEADER_PROGRESS);
      this.env.log.debug({ callId, subject, instance }, "call in progress; extending the attempt");
    }
    clearTimeout(this.#timer);
    // A retry this cancels was for a refusal that no longer stands: the holder is alive.
    if (this.#phase === "backoff") this.#refusal = undefined;
    this.#phase = "attempt";
    // The holder's attempt answers for the call now: its refusals count again.
    const held = this.#attemptOf(msg);
    if (held !== undefined && held < this.#live) this.#live = held;
    const left = this.spec.deadline - Date.now();
    this.#timer = setTimeout(onTimer, Math.max(0, Math.min(this.#window, left)), this);
  }

  /** Sends the next attempt, with its share of what is left of the deadline. */
  #send(): void {
    const { policy, deadline, headers, body, reply, scope } = this.spec;
    const remaining = Math.floor(deadline - Date.now());
    if (remaining <= 0) {
      this.#fail();
      return;
    }
    const attempt = ++this.#attempt;
    this.#phase = "attempt";
    this.#refusal = undefined;
    const share = Math.ceil(remaining / (policy.attempts - attempt + 1));
    if (this.#durable !== undefined) {
      this.#enqueue(this.#durable, attempt, Math.min(share, MAX_BUDGET_MS));
      return;
    }
    const window = Math.min(share, MAX_BUDGET_MS);
    this.#window = window;
    this.#live = attempt;
    const budget = Math.min(remaining, MAX_BUDGET_MS);
    const compact = this.spec.compact;
    try {
      if (compact !== undefined) {
        // The call token: the same call key and id on every attempt, so any attempt's reply routes here.
        const reply = attemptToken(compact, attempt, budget, window);
        this.env.transport.publish(scope.subject, body, { reply });
      } else {
        headers[HEADER_TIMEOUT] = String(budget);
        headers[HEADER_PROGRESS] = String(window);
        if (attempt > 1) headers[HEADER_ATTEMPT] = String(attempt);
        this.env.transport.publish(scope.subject, body, { reply, headers });
      }
    } catch (err) {
      this.settle({ ok: false, error: sendFailed(scope.subject, scope.callId, err) });
      return;
    }
    this.#retried(attempt);
    this.#timer = setTimeout(onTimer, window, this);
  }

  #retried(attempt: number): void {
    if (this.#retry !== undefined) {
      const { subject, callId } = this.spec.scope;
      this.env.onRetry?.({ subject, id: callId, attempt, ...this.#retry });
      this.#retry = undefined;
    }
  }

  /**
   * Stores the durable command. Attempts retry only the store: once the queue has the command, the
   * call waits for its reply until the deadline, however long responders take to get to it.
   */
  #enqueue(durable: NonNullable<CallSpec["durable"]>, attempt: number, timeoutMs: number): void {
    const { body, headers, reply } = this.spec;
    headers[HEADER_REPLY] = reply;
    durable.queue.enqueue(durable.service, durable.method, body, headers, timeoutMs).then(
      (receipt) => this.#onStored(attempt, receipt),
      (err: unknown) => this.#onStoreFailed(attempt, err),
    );
    this.#retried(attempt);
    // The attempt's share bounds the store too (creating a missing stream takes extra requests).
    this.#timer = setTimeout(onTimer, timeoutMs, this);
  }

  #onStored(attempt: number, receipt: EnqueueReceipt): void {
    if (this.settled || this.#durable === undefined) return;
    clearTimeout(this.#timer);
    if (receipt.duplicate && attempt === 1) {
      // Another call with this id stored the command first, so its reply goes to that caller. Ask
      // for the outcome with core requests: the responder's dedupe store replays or joins it.
      delete this.spec.headers[HEADER_REPLY];
      this.#durable = undefined;
      this.#attempt = 0;
      this.#send();
      return;
    }
    // Stored (by this attempt, or by an earlier one whose confirmation was lost).
    this.#stored = receipt.location;
    this.#unanswered = true;
    this.#phase = "lingering";
    const left = this.spec.deadline - Date.now();
    // Wake a little before the deadline to ask whether anything consumes the commands, so that a
    // TIMEOUT can say why it came (no responder serves durable calls) without settling late.
    const early = left - Math.min(CONSUMERS_ASK_MS, left / 10);
    this.#timer = setTimeout(onTimer, Math.max(0, Math.min(early, MAX_BUDGET_MS)), this);
    // Stored by an earlier attempt whose confirmation was lost (the connection dropped): the command
    // may have run, and its reply been lost, before this call was waiting for it. Ask for it now.
    if (receipt.duplicate) this.askAgain();
  }

  /** Asks the queue whether anything consumes the stored command's service; then waits out the deadline. */
  #askConsumers(): void {
    const queue = this.#durable?.queue;
    this.#consumers = "asked";
    if (queue?.consumers !== undefined && this.#durable !== undefined) {
      queue.consumers(this.#durable.service).then(
        (state) => {
          if (this.#consumers === "asked") this.#consumers = state;
        },
        () => undefined,
      );
    }
    const left = this.spec.deadline - Date.now();
    this.#timer = setTimeout(onTimer, Math.max(0, Math.min(left, MAX_BUDGET_MS)), this);
  }

  #onStoreFailed(attempt: number, err: unknown): void {
    // A failure of an attempt the timer already gave up on changes nothing.
    if (this.settled || attempt !== this.#attempt || this.#phase !== "attempt") return;
    clearTimeout(this.#timer);
    const { subject, callId } = this.spec.scope;
    const text = err instanceof Error ? err.message : String(err);
    const denied = permissionError(err);
    if (denied) {
      const to = denied.subject ?? "the durable queue";
      this.deny(
        `${denied.operation === "publish" ? "publish to" : "subscribe to"} ${to} (to store the durable command)`,
        text,
      );
      return;
    }
    if (err instanceof Error && /timeout/i.test(`${err.name} ${err.message}`)) {
      // No confirmation is not "not stored": wait for a reply as for an unanswered attempt.
      this.#maybeStored = true;
      this.#unanswered = true;
      this.#next();
      return;
    }
    if (err instanceof QueueUnavailableError && this.spec.policy.attempts > 1) {
      this.#refusal = new RpcError(
        "NO_RESPONDERS",
        `${subject}: could not store the durable command: ${text} (call ${callId})`,
        { callId, subject, cause: err },
      );
      this.#unheardRetry();
      return;
    }
    this.#refusal = new RpcError(
      "UNAVAILABLE",
      `${subject}: could not store the durable command (${text}); is JetStream enabled on the server, and may this connection publish to it?`,
      { callId, subject, cause: err },
    );
    this.#next();
  }

  /** The timer fired: an attempt went unanswered, a backoff ended, or the deadline came. */
  fire(): void {
    if (this.settled) return;
    if (this.#durable !== undefined && this.#phase === "attempt") this.#maybeStored = true;
    if (this.#phase === "backoff") {
      this.#send();
      return;
    }
    if (this.#phase === "lingering") {
      if (this.#stored !== undefined && this.#consumers === undefined) this.#askConsumers();
      else this.#fail();
      return;
    }
    this.#unanswered = true;
    this.#next();
  }

  /** The current attempt ended without a final answer: back off and retry, linger, or fail. */
  #next(): void {
    const { policy, deadline, scope } = this.spec;
    const left = deadline - Date.now();
    if (this.#attempt >= policy.attempts || left <= 0) {
      // An attempt that got no answer may still be running: its late reply can complete the call,
      // so keep listening until the deadline rather than fail early with the last refusal.
      if (!this.#unanswered || left <= 0) {
        this.#fail();
        return;
      }
      this.#phase = "lingering";
      this.#timer = setTimeout(onTimer, Math.min(left, MAX_BUDGET_MS), this);
      return;
    }
    const delayMs = Math.min(backoffMs(policy, this.#attempt + 1), left);
    const code = this.#refusal?.code ?? "TIMEOUT";
    const { callId, subject } = scope;
    this.env.log.warn(
      { callId, subject, attempt: this.#attempt, delayMs, code },
      "attempt failed; retrying",
    );
    this.#retry = { code, delayMs };
    this.#phase = "backoff";
    this.#timer = setTimeout(onTimer, delayMs, this);
  }

  /** What the queue said about its consumers, as part of a TIMEOUT message. */
  #consumersNote(): string {
    const service = this.#durable?.service ?? "the service";
    if (this.#consumers === "none") {
      return ` (but no responder has ever consumed durable commands of ${service}: start one with the durable option)`;
    }
    if (this.#consumers === "idle") {
      return ` (but no responder is consuming durable commands of ${service} now: is one running with the durable option?)`;
    }
    return "";
  }

  /** `refusal`, saying how long the call kept trying. */
  #unheardFor(refusal: RpcError): RpcError {
    const elapsed = Date.now() - this.#started;
    return new RpcError(
      refusal.code,
      `${refusal.message} (still so after retrying for ${elapsed} ms, until the deadline)`,
      {
        callId: this.spec.scope.callId,
        subject: this.spec.scope.subject,
        ...(refusal.details === undefined ? {} : { details: refusal.details }),
        cause: refusal,
      },
    );
  }

  /** Settles with the last refusal, or TIMEOUT. */
  #fail(): void {
    const refusal = this.#refusal;
    // A durable command that is (or may be) stored is not "nobody got it": say where it is.
    const durableKnown = this.#stored !== undefined || this.#maybeStored;
    if (
      refusal &&
      refusal.code !== "TIMEOUT" &&
      !(durableKnown && refusal.code === "NO_RESPONDERS")
    ) {
      this.settle({ ok: false, error: this.#unheard > 1 ? this.#unheardFor(refusal) : refusal });
      return;
    }
    const { subject, callId } = this.spec.scope;
    const n = this.#attempt;
    const elapsed = Date.now() - this.#started;
    const stored = this.#stored;
    const message =
      stored !== undefined
        ? `${subject}: no result within ${elapsed} ms, but the durable command is stored (${stored}, call ${callId}) and will run when a responder takes it${this.#consumersNote()}; call again with id '${callId}' to get its result`
        : this.#maybeStored
          ? `${subject}: no result within ${elapsed} ms, and JetStream did not confirm storing the durable command (call ${callId}); it may be stored and run later: call again with id '${callId}' (never a new id) to find out`
          : `${subject} timed out after ${elapsed} ms (call ${callId}, ${n} attempt${n === 1 ? "" : "s"}); is a responder running, and is the deadline long enough?`;
    const scope =
      stored === undefined ? { callId, subject } : { callId, subject, details: { stored } };
    this.settle({ ok: false, error: new RpcError("TIMEOUT", message, scope) });
  }
}

function onTimer(call: Call): void {
  call.fire();
}

/** The error for a call its signal aborted. */
export function cancelledError(subject: string, callId: string, reason: unknown): RpcError {
  return new RpcError(
    "CANCELLED",
    `${subject}: the call was cancelled by its signal (call ${callId})`,
    {
      callId,
      subject,
      cause: reason,
    },
  );
}

function sendFailed(subject: string, callId: string, err: unknown): RpcError {
  const text = err instanceof Error ? err.message : String(err);
  if (err instanceof PayloadTooLargeError) {
    return new RpcError(
      "PAYLOAD_TOO_LARGE",
      `${subject}: request too large: ${text}; send less, or raise max_payload`,
      {
        callId,
        subject,
        cause: err,
      },
    );
  }
  // Not retried: a connection that is closed or draining refuses every attempt the same way.
  return new RpcError(
    "UNAVAILABLE",
    `${subject}: could not send the request: ${text}; is the connection open?`,
    {
      callId,
      subject,
      cause: err,
    },
  );
}
