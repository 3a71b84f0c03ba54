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
