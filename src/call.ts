/**
 * One call in flight: its attempts, its single deadline, its backoff, and its one settlement.
 * Every attempt goes to the same reply subject, so a late reply to an earlier attempt completes it.
 *
 * @module
 */
import pTimeout from "p-timeout";
import type { Logger } from "pino";
import { RpcError } from "./errors.js";
import { HEADER_ATTEMPT, HEADER_CALL_ID, HEADER_TIMEOUT } from "./protocol.js";
import { type ReplyOutcome, type ReplyScope, readReply } from "./reply.js";
import { backoffMs, type RetryPolicy } from "./retry.js";
import { PayloadTooLargeError } from "./transport/errors.js";
import type { Transport, TransportMessage } from "./transport/types.js";

/** A call the client has validated and encoded. */
export interface CallSpec {
  subject: string;
  id: string;
  scope: ReplyScope;
  policy: RetryPolicy;
  /** Epoch ms. */
  deadline: number;
  signals: AbortSignal[];
  body: Uint8Array;
  extra: Record<string, string> | undefined;
  /** This call's reply subject, under the client's inbox. */
  reply: string;
}

/** A call's handle in the client's table of pending calls. */
export interface PendingCall {
  settled: boolean;
  onReply(msg: TransportMessage): void;
  settle(outcome: ReplyOutcome): void;
}

/** What a call needs from its client. */
export interface CallEnv {
  transport: Transport;
  log: Logger;
  /** Adds the call to the client's table, so replies and close() reach it. */
  track(entry: PendingCall): void;
  /** Removes it, once settled. */
  untrack(): void;
}

/** Sends the call, retrying as its policy allows, and settles it exactly once. */
export function runCall(c: CallSpec, env: CallEnv): Promise<unknown> {
  const started = Date.now();
  let resolve!: (v: unknown) => void;
  let reject!: (e: unknown) => void;
  const result = new Promise<unknown>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  let wake: (() => void) | undefined;
  let inAttempt = false;
  let lastError: RpcError | undefined;
  let sent = 0;
  // Read through a function: TypeScript cannot see the callbacks that assign it during an await.
  // A TIMEOUT answer from the responder is replaced by the client's own, which counts the attempts.
  const failure = (): RpcError | undefined =>
    lastError?.code === "TIMEOUT" ? undefined : lastError;

  const settle = (outcome: ReplyOutcome) => {
    if (entry.settled) return;
    entry.settled = true;
    env.untrack();
    for (const s of c.signals) s.removeEventListener("abort", onAbort);
    wake?.();
    if (outcome.ok) resolve(outcome.value);
    else reject(outcome.error);
  };
  const settleOrRetry = (outcome: ReplyOutcome) => {
    if (entry.settled) return;
    if (outcome.ok || !outcome.error.retryable) return settle(outcome);
    // A retryable answer (no responders, overloaded, draining) ends the current attempt early.
    // One that arrives during the backoff belongs to an earlier attempt and changes nothing.
    if (inAttempt) {
      lastError = outcome.error;
      wake?.();
    }
  };
  const onAbort = (event: Event) => {
    settle({
      ok: false,
      error: cancelledError(c.subject, c.id, (event.target as AbortSignal).reason),
    });
  };
  const entry: PendingCall = {
    settled: false,
    onReply(msg) {
      const outcome = readReply(c.scope, msg);
      if (outcome instanceof Promise) void outcome.then(settleOrRetry);
      else settleOrRetry(outcome);
    },
    settle,
  };
  env.track(entry);
  for (const s of c.signals) s.addEventListener("abort", onAbort, { once: true });

  /** Waits `ms`, or less when the call settles or (during an attempt) a retryable answer arrives. */
  const wait = (ms: number) =>
    pTimeout(
      new Promise<void>((res) => {
        wake = res;
      }),
      { milliseconds: Math.max(0, ms), fallback: () => undefined },
    );

  const attempts = c.policy.attempts;
  const loop = async () => {
    for (let attempt = 1; attempt <= attempts; attempt++) {
      const remaining = c.deadline - Date.now();
      if (remaining <= 0) break;
      lastError = undefined;
      const headers: Record<string, string> = {
        ...c.extra,
        [HEADER_CALL_ID]: c.id,
        [HEADER_TIMEOUT]: String(remaining),
      };
      if (attempt > 1) headers[HEADER_ATTEMPT] = String(attempt);
      try {
        env.transport.publish(c.subject, c.body, { reply: c.reply, headers });
      } catch (err) {
        return settle({ ok: false, error: sendFailed(c.subject, c.id, err) });
      }
      sent++;
      inAttempt = true;
      await wait(Math.ceil(remaining / (attempts - attempt + 1)));
      inAttempt = false;
      if (entry.settled || attempt === attempts) break;
      const delayMs = Math.min(
        backoffMs(c.policy, attempt + 1),
        Math.max(0, c.deadline - Date.now()),
      );
      env.log.warn(
        {
          callId: c.id,
          subject: c.subject,
          attempt,
          delayMs,
          code: failure()?.code ?? "TIMEOUT",
        },
        "attempt failed; retrying",
      );
      if (delayMs > 0) await wait(delayMs);
      if (entry.settled) break;
    }
    settle({
      ok: false,
      error:
        failure() ??
        new RpcError(
          "TIMEOUT",
          `${c.subject} timed out after ${Date.now() - started} ms (call ${c.id}, ${sent} attempt${sent === 1 ? "" : "s"}); is a responder running, and is the deadline long enough?`,
          { callId: c.id, subject: c.subject },
        ),
    });
  };
  void loop();
  return result;
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
