/**
 * One call in flight: its attempts, its single deadline, its backoff, and its one settlement.
 * Every attempt goes to the same reply subject, so a late reply to an earlier attempt completes it.
 *
 * @module
 */
import type { Logger } from "pino";
import { RpcError } from "./errors.js";
import { HEADER_ATTEMPT, HEADER_TIMEOUT, MAX_BUDGET_MS } from "./protocol.js";
import { type ReplyOutcome, type ReplyScope, readReply } from "./reply.js";
import { backoffMs, type RetryPolicy } from "./retry.js";
import { PayloadTooLargeError } from "./transport/errors.js";
import type { Transport, TransportMessage } from "./transport/types.js";

/** A call the client has validated and encoded. */
export interface CallSpec {
  readonly scope: ReplyScope;
  readonly policy: RetryPolicy;
  /** Epoch ms. */
  readonly deadline: number;
  readonly signals: readonly AbortSignal[];
  readonly body: Uint8Array;
  /** Headers for every attempt: the call id and the caller's own. The budget is added per attempt. */
  readonly headers: Record<string, string>;
  /** This call's reply subject, under the client's inbox. */
  readonly reply: string;
  /** The key of this call in the client's table of pending calls. */
  readonly token: string;
}

/** What a call needs from its client. */
export interface CallEnv {
  readonly transport: Transport;
  readonly log: Logger;
  /** The client's table of pending calls, by token: replies and close() reach calls through it. */
  readonly pending: Map<string, Call>;
}

/**
 * A call from the first send to its one settlement. Listens to the caller's signals as an event
 * listener object (`handleEvent`), so a call allocates no closures of its own.
 */
export class Call {
  settled = false;
  readonly promise: Promise<unknown>;
  #resolve!: (value: unknown) => void;
  #reject!: (reason: unknown) => void;
  // One timer at a time: the current attempt's share of the deadline, or the backoff.
  #timer: NodeJS.Timeout | undefined;
  #wake: (() => void) | undefined;
  #inAttempt = false;
  #lastError: RpcError | undefined;
  #unanswered = false;
  #sent = 0;
  readonly #started = Date.now();

  constructor(
    readonly spec: CallSpec,
    readonly env: CallEnv,
  ) {
    this.promise = new Promise((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
  }

  /** Starts the call; returns its promise. */
  start(): Promise<unknown> {
    const { signals, token } = this.spec;
    this.env.pending.set(token, this);
    for (const s of signals) s.addEventListener("abort", this, { once: true });
    // A signal that aborted while the request was being validated fired before we listened.
    const aborted = signals.find((s) => s.aborted);
    if (aborted) this.cancel(aborted.reason);
    else void this.#loop();
    return this.promise;
  }

  /** The caller's signal aborted. */
  handleEvent(event: Event): void {
    this.cancel((event.target as AbortSignal).reason);
  }

  cancel(reason: unknown): void {
    this.settle({
      ok: false,
      error: cancelledError(this.spec.scope.subject, this.spec.scope.callId, reason),
    });
  }

  onReply(msg: TransportMessage): void {
    const outcome = readReply(this.spec.scope, msg);
    if (outcome instanceof Promise) void outcome.then((o) => this.#settleOrRetry(o));
    else this.#settleOrRetry(outcome);
  }

  settle(outcome: ReplyOutcome): void {
    if (this.settled) return;
    this.settled = true;
    this.env.pending.delete(this.spec.token);
    for (const s of this.spec.signals) s.removeEventListener("abort", this);
    this.#wakeUp();
    if (outcome.ok) this.#resolve(outcome.value);
    else this.#reject(outcome.error);
  }

  #settleOrRetry(outcome: ReplyOutcome): void {
    if (this.settled) return;
    if (outcome.ok || !outcome.error.retryable) return this.settle(outcome);
    // A retryable answer (no responders, overloaded, draining) ends the current attempt early.
    // One that arrives during the backoff belongs to an earlier attempt and changes nothing.
    if (this.#inAttempt) {
      this.#lastError = outcome.error;
      this.#wakeUp();
    }
  }

  #wakeUp(): void {
    clearTimeout(this.#timer);
    this.#wake?.();
  }

  /** Waits `ms`, or less when the call settles or (during an attempt) a retryable answer arrives. */
  #wait(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      this.#wake = resolve;
      this.#timer = setTimeout(resolve, Math.min(ms, MAX_BUDGET_MS));
    });
  }

  async #loop(): Promise<void> {
    const { policy, deadline, headers, body, reply, scope } = this.spec;
    const attempts = policy.attempts;
    for (let attempt = 1; attempt <= attempts; attempt++) {
      const remaining = Math.floor(deadline - Date.now());
      if (remaining <= 0) break;
      this.#lastError = undefined;
      headers[HEADER_TIMEOUT] = String(Math.min(remaining, MAX_BUDGET_MS));
      if (attempt > 1) headers[HEADER_ATTEMPT] = String(attempt);
      try {
        this.env.transport.publish(scope.subject, body, { reply, headers });
      } catch (err) {
        return this.settle({ ok: false, error: sendFailed(scope.subject, scope.callId, err) });
      }
      this.#sent++;
      this.#inAttempt = true;
      await this.#wait(Math.ceil(remaining / (attempts - attempt + 1)));
      this.#inAttempt = false;
      if (this.settled) return;
      // Read through a method: TypeScript cannot see the callbacks that set it during the await.
      const refusal = this.#refusal();
      if (refusal === undefined) this.#unanswered = true;
      if (attempt === attempts) break;
      const delayMs = Math.min(backoffMs(policy, attempt + 1), Math.max(0, deadline - Date.now()));
      const code = refusal?.code ?? "TIMEOUT";
      this.env.log.warn(
        { callId: scope.callId, subject: scope.subject, attempt, delayMs, code },
        "attempt failed; retrying",
      );
      if (delayMs > 0) await this.#wait(delayMs);
      if (this.settled) return;
    }
    // An attempt that got no answer may still be running: its late reply can complete the call, so
    // keep listening until the deadline rather than failing early with the last attempt's refusal.
    const left = deadline - Date.now();
    if (this.#unanswered && left > 0) await this.#wait(left);
    if (this.settled) return;
    const last = this.#refusal();
    this.settle({
      ok: false,
      error: last && last.code !== "TIMEOUT" ? last : this.#timeoutError(),
    });
  }

  #refusal(): RpcError | undefined {
    return this.#lastError;
  }

  #timeoutError(): RpcError {
    const { subject, callId } = this.spec.scope;
    const sent = this.#sent;
    return new RpcError(
      "TIMEOUT",
      `${subject} timed out after ${Date.now() - this.#started} ms (call ${callId}, ${sent} attempt${sent === 1 ? "" : "s"}); is a responder running, and is the deadline long enough?`,
      { callId, subject },
    );
  }
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
