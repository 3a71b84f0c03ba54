/**
 * The `DedupeStore` port: how a responder makes one call id run its handler at most once. Stores hold
 * encoded replies and know nothing of contracts.
 *
 * @module
 */

/** A reply as it went on the wire, kept so duplicates get the same answer. */
export interface StoredReply {
  /** The reply body. */
  readonly data: Uint8Array;
  /** The reply headers (error replies only). */
  readonly headers?: Readonly<Record<string, string>>;
}

/** What a store says when a call id arrives. */
export type Claim =
  /** First arrival: run the handler, then call `finish`. */
  | { readonly status: "owner"; finish(reply: StoredReply, keep: boolean): void | Promise<void> }
  /** A finished execution with this id: send its reply again. */
  | { readonly status: "done"; readonly reply: StoredReply }
  /**
   * The same id is running now (here or, for shared stores, elsewhere): wait for its reply. Resolves
   * `undefined` when the wait ends without one (the signal aborted, or the owner vanished and the
   * claim may be taken over: claim again).
   */
  | { readonly status: "running"; wait(signal: AbortSignal): Promise<StoredReply | undefined> }
  /**
   * A finished execution with this id whose reply the store dropped to stay within its memory
   * budget: do not run it again; tell the caller its reply is gone (`REPLY_DROPPED`).
   */
  | { readonly status: "dropped" }
  /** The id was used with a different fingerprint (another request body, or another method). */
  | { readonly status: "conflict" }
  /**
   * The store cannot take one more call without forgetting a reply its caller may still ask for
   * again: refuse the call (the responder answers `OVERLOADED`). Room is expected in `retryAfterMs`.
   */
  | { readonly status: "full"; readonly retryAfterMs: number };

/**
 * Remembers which call ids ran and what they answered. {@link memoryDedupe} protects one process;
 * a shared store (JetStream KV) protects every instance of a service.
 */
export interface DedupeStore {
  /**
   * Claims `id` for a request identified by `fingerprint` (method and body). Concurrent claims of one
   * id get one `owner`; the rest get `running`, then `done` once the owner finished with `keep`.
   * `deadline` (epoch ms) is when this call's caller stops waiting: a kept reply must stay replayable
   * at least until then, since the caller may retry until then.
   * A store that answers from memory may return the claim itself rather than a promise, which saves
   * the responder a promise and a microtask per call.
   */
  claim(id: string, fingerprint: string, deadline?: number): Claim | Promise<Claim>;
}
