/**
 * {@link RpcError}, the one error class every failed call rejects with, and the table of built-in codes.
 *
 * @module
 */

/**
 * The built-in error codes, each with the NATS micro status it travels with (`Nats-Service-Error-Code`)
 * and whether a client may retry a call that failed with it.
 *
 * Contract error codes (declared in a method's `errors`) travel with status 400 and are never retried.
 */
export const RPC_CODES = {
  /** The call's deadline passed before a reply arrived. */
  TIMEOUT: { status: 504, retryable: true },
  /** No responder is subscribed to the method's subject. */
  NO_RESPONDERS: { status: 503, retryable: true },
  /**
   * The call could not be made now: the client's connection is closed or draining (the client fails
   * at once rather than retry a send that cannot succeed), or a non-ricochet NATS micro peer answered
   * with status 503. Retryable later, on a working connection.
   */
  UNAVAILABLE: { status: 503, retryable: true },
  /** The responder is at its concurrency limit and its queue is full. */
  OVERLOADED: { status: 429, retryable: true },
  /** The request failed validation (on the client before sending, or on the responder). */
  INVALID_REQUEST: { status: 400, retryable: false },
  /** The reply failed the contract's response (or error details) schema on the client. */
  INVALID_RESPONSE: { status: 502, retryable: false },
  /** The call id was already used for a different request or method. */
  ID_REUSED: { status: 409, retryable: false },
  /** The encoded request or reply is larger than the server's max_payload. */
  PAYLOAD_TOO_LARGE: { status: 413, retryable: false },
  /**
   * The call already ran, but the responder's dedupe store had dropped its reply to stay within its
   * memory budget (`memoryDedupe`'s `maxBytes`), so it could neither replay it nor, safely, run it
   * again. The call's effects happened once; its result is gone.
   */
  REPLY_DROPPED: { status: 410, retryable: false },
  /**
   * The server refused the connection a publish or a subscription the call needs, for want of
   * permission; the message names the subject. Not retried: grant the permission (docs/security.md).
   */
  PERMISSION_DENIED: { status: 403, retryable: false },
  /** The caller aborted the call (its `signal`), or the client was closed. */
  CANCELLED: { status: 499, retryable: false },
  /**
   * The handler failed in a way the contract does not declare. The cause stays in the responder's log;
   * the reply carries only `details.errorId`, which the log line also has.
   */
  INTERNAL: { status: 500, retryable: false },
  /**
   * A durable call failed on every delivery its queue allows, and its command was moved to the
   * dead-letter subject named in `details.deadLetter` (with the last error). Fix the cause, then
   * republish it from there.
   */
  DEAD_LETTERED: { status: 500, retryable: false },
} as const satisfies Record<string, { status: number; retryable: boolean }>;

/** A built-in error code. */
export type RpcCode = keyof typeof RPC_CODES;

/** The NATS micro status sent with a contract-declared error code. */
export const CONTRACT_ERROR_STATUS = 400;

const BRAND = Symbol.for("ricochet.RpcError");

/** What {@link RpcError} accepts beside its code and message. */
export interface RpcErrorOptions<D = unknown> {
  /** Structured data about the failure; for a contract error, typed by the contract's schema. */
  details?: D;
  /** The call's id (its idempotency key). */
  callId?: string;
  /** The subject the call went to. */
  subject?: string;
  /** The underlying error. Kept locally; never sent over the wire. */
  cause?: unknown;
  /** The NATS micro status; defaults to the code's entry in {@link RPC_CODES}, or 400 for contract codes. */
  status?: number;
}

/**
 * The error every failed call rejects with, and the error a handler throws (through `ctx.fail`) for a
 * contract-declared failure. Branch on {@link RpcError.code}, never on the message.
 *
 * @example
 * try { await client.charge(req) } catch (err) {
 *   if (isRpcError(err) && err.code === "INSUFFICIENT_FUNDS") console.log(err.details.balanceCents);
 * }
 */
export class RpcError<C extends string = string, D = unknown> extends Error {
  override readonly name = "RpcError";
  /** A built-in code from {@link RPC_CODES}, or a code the contract declares. */
  readonly code: C;
  /** Structured data; for contract errors, typed by the contract. */
  readonly details: D;
  /** The NATS micro status code this error travels with. */
  readonly status: number;
  /** The call's id, when the error belongs to a call. */
  readonly callId: string | undefined;
  /** The subject the call went to, when known. */
  readonly subject: string | undefined;

  constructor(code: C, message: string, options: RpcErrorOptions<D> = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.details = options.details as D;
    this.status = options.status ?? statusOf(code);
    this.callId = options.callId;
    this.subject = options.subject;
    Object.defineProperty(this, BRAND, { value: true });
  }

  /** Whether a client may retry a call that failed with this error. Contract errors are never retried. */
  get retryable(): boolean {
    return isBuiltInCode(this.code) && RPC_CODES[this.code].retryable;
  }

  /** The JSON form sent on the wire and written to logs: `{ code, message, details }`. */
  toJSON(): { code: C; message: string; details?: D } {
    return this.details === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, details: this.details };
  }
}

/** Whether `code` is one of the built-in {@link RpcCode}s. */
export function isBuiltInCode(code: string): code is RpcCode {
  return Object.hasOwn(RPC_CODES, code);
}

function statusOf(code: string): number {
  return isBuiltInCode(code) ? RPC_CODES[code].status : CONTRACT_ERROR_STATUS;
}

/**
 * Whether `value` is an {@link RpcError}. Also true for errors made by another copy of ricochet in the
 * same process, which `instanceof` would miss.
 */
export function isRpcError(value: unknown): value is RpcError {
  return (
    value instanceof RpcError ||
    (typeof value === "object" &&
      value !== null &&
      (value as Record<symbol, unknown>)[BRAND] === true)
  );
}
