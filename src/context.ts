/**
 * The context a handler receives with each call: who is calling, how long it may take, and how to
 * fail with a contract error.
 *
 * @module
 */
import { hash } from "node:crypto";
import type { Logger } from "pino";
import type { input } from "zod/v4/core";
import type { AnyMethod, ContractErrorCode } from "./contract.js";
import { RpcError } from "./errors.js";
import type { TransportMessage } from "./transport/types.js";

/**
 * @internal The key of the method through which a handler's context names the calls the handler
 * makes with `{ parent: ctx }` (see `CallOptions.parent`). Not part of {@link CallContext}'s public
 * shape; a `Symbol.for`, so a client from another copy of the library recognises the context too.
 */
export const CHILD_ID = Symbol.for("ricochet.childId");

/** What a handler gets beside the request. */
export interface CallContext<M extends AnyMethod = AnyMethod> {
  /**
   * The call id (idempotency key), from `Nats-Msg-Id` or the call token in the reply subject; made up
   * for a caller that sent none.
   */
  readonly id: string;
  /** The attempt number, 1 for the first. */
  readonly attempt: number;
  /** When the caller stops waiting, in epoch milliseconds. */
  readonly deadline: number;
  /** Aborts when the deadline passes. Pass it on to I/O the handler starts. */
  readonly signal: AbortSignal;
  /**
   * The request's headers as sent, first value each. A compact call (metadata in its reply subject,
   * docs/protocol.md) has none of ricochet's own: read `id`, `attempt` and `deadline` instead.
   */
  readonly headers: Readonly<Record<string, string>>;
  /** A pino child logger bound to the service, method and call id. */
  readonly logger: Logger;
  /** The contract's service name (also for a durable command, whose subject is the queue's). */
  readonly service: string;
  /** The method's name. */
  readonly method: string;
  /** The subject the call arrived on. */
  readonly subject: string;
  /**
   * Makes the error for a failure the contract declares; `throw` it. Its details are checked against
   * the contract before they are sent.
   *
   * @example throw ctx.fail("INSUFFICIENT_FUNDS", { balanceCents: 3 });
   */
  fail<Code extends ContractErrorCode<M>>(
    code: Code,
    details: input<M["errors"][Code]>,
    message?: string,
  ): RpcError<Code>;
  /**
   * Makes the error for "not now": `throw` it when the call cannot succeed yet but may later (a
   * resource is being restocked, a rate limit). Its caller gets `UNAVAILABLE` (retryable) with
   * `reason`; a durable command is tried again later, for up to its queue's `transientForMs`, without
   * counting toward `maxDeliver`. A nested call's `NO_RESPONDERS`, `UNAVAILABLE`, `OVERLOADED` or
   * `TIMEOUT` that the handler lets through is treated the same way.
   *
   * @example if (!stock.ready) throw ctx.retryLater("inventory is restocking");
   */
  retryLater(reason?: string): RpcError<"UNAVAILABLE">;
}

/** Errors made by `ctx.retryLater()`: their message is the handler's own, and goes to the caller. */
export const RETRY_LATER = new WeakSet<object>();

/**
 * A context whose costly parts (the signal and its timer, the header record, the child logger) are
 * made only when the handler reads them. Call {@link LazyContext.dispose} when the handler is done.
 */
export class LazyContext implements CallContext {
  #msg: TransportMessage;
  #log: Logger;
  #controller: AbortController | undefined;
  #timer: NodeJS.Timeout | undefined;
  #headers: Record<string, string> | undefined;
  #logger: Logger | undefined;
  /** Calls made so far by this execution with `{ parent: this }`, per `<service>.<method>`. */
  #children: Map<string, number> | undefined;
  /** The responder's shutdown signal: it aborts this call's signal too. */
  #stopping: AbortSignal | undefined;
  #onStop: (() => void) | undefined;

  constructor(
    readonly id: string,
    readonly attempt: number,
    readonly deadline: number,
    readonly service: string,
    readonly method: string,
    msg: TransportMessage,
    log: Logger,
    stopping?: AbortSignal,
  ) {
    this.#msg = msg;
    this.#log = log;
    this.#stopping = stopping;
  }

  get subject(): string {
    return this.#msg.subject;
  }

  get signal(): AbortSignal {
    if (this.#controller === undefined) {
      const controller = new AbortController();
      this.#controller = controller;
      const abort = () =>
        controller.abort(
          new RpcError("TIMEOUT", `${this.subject}: the call's deadline passed (call ${this.id})`),
        );
      const left = this.deadline - Date.now();
      if (left <= 0) abort();
      else this.#timer = setTimeout(abort, left);
      const stopping = this.#stopping;
      if (stopping?.aborted) controller.abort(stopping.reason);
      else if (stopping !== undefined) {
        this.#onStop = () => controller.abort(stopping.reason);
        stopping.addEventListener("abort", this.#onStop, { once: true });
      }
    }
    return this.#controller.signal;
  }

  get headers(): Readonly<Record<string, string>> {
    this.#headers ??= this.#msg.headers();
    return this.#headers;
  }

  get logger(): Logger {
    this.#logger ??= this.#log.child({
      method: this.method,
      callId: this.id,
      attempt: this.attempt,
    });
    return this.#logger;
  }

  retryLater(reason?: string): RpcError<"UNAVAILABLE"> {
    const err = new RpcError(
      "UNAVAILABLE",
      `${this.subject}: ${reason ?? "the handler asked to be retried later"} (call ${this.id}); retry later`,
      { callId: this.id, subject: this.subject },
    );
    RETRY_LATER.add(err);
    return err;
  }

  fail<Code extends string>(code: Code, details: unknown, message?: string): RpcError<Code> {
    return new RpcError(code, message ?? `${this.subject} failed with ${code}`, {
      details,
      callId: this.id,
      subject: this.subject,
    });
  }

  /**
   * @internal The id of the next call this execution makes to `subject` (`<service>.<method>`)
   * with `{ parent: ctx }`: `<id>/<subject>/<n>`, where `n` counts this execution's calls to that
   * subject from 1. The same call id run again (a redelivery, a retry) derives the same ids in the
   * same order. A prototype method, so it is not enumerable and not an own field of the context.
   */
  [CHILD_ID](subject: string): string {
    this.#children ??= new Map();
    const n = (this.#children.get(subject) ?? 0) + 1;
    this.#children.set(subject, n);
    const id = `${this.id}/${subject}/${n}`;
    // Ids of deep nesting would outgrow the 512 characters an id may have: the parent part is then
    // replaced by its hash, the same on every run, so a re-run still derives the same ids.
    return id.length <= 512 ? id : `${hash("sha256", this.id, "base64url")}/${subject}/${n}`;
  }

  /** Clears the deadline timer and the shutdown listener. */
  dispose(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    if (this.#onStop !== undefined) this.#stopping?.removeEventListener("abort", this.#onStop);
  }
}
