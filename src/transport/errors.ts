/**
 * Errors a transport throws from `publish`, so the layers above can tell them apart without parsing
 * messages.
 *
 * @module
 */

/** The message is larger than the bus accepts (a NATS server's `max_payload`). */
export class PayloadTooLargeError extends Error {
  override readonly name = "PayloadTooLargeError";
  constructor(
    /** The message's size in bytes (payload, plus headers where the bus counts them). */
    readonly size: number,
    /** The limit in bytes. */
    readonly limit: number,
    options?: ErrorOptions,
  ) {
    super(`message of ${size} bytes exceeds the bus's max_payload of ${limit} bytes`, options);
  }
}

/** A refusal for want of permission, as the NATS client reports it: the operation and the subject. */
export type PermissionError = Error & { operation?: string; subject?: string };

/**
 * The permission violation behind `err` (itself, or one of its causes: nats.js wraps it in a
 * `RequestError` for requests), or `undefined`. Matched by name, so that two copies of the NATS client
 * in node_modules still agree.
 */
export function permissionError(err: unknown): PermissionError | undefined {
  for (let e = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    if (e.name === "PermissionViolationError") return e as PermissionError;
    const m = /Permissions Violation for (Publish|Subscription) to "([^"]+)"/.exec(e.message);
    if (m) {
      return Object.assign(e, {
        operation: m[1] === "Publish" ? "publish" : "subscription",
        subject: m[2],
      }) as PermissionError;
    }
  }
  return undefined;
}
