/**
 * The `Transport` port: the whole of what ricochet needs from a message bus. RPC logic (correlation,
 * deadlines, retries, dedupe) lives above it; adapters know nothing of contracts or zod.
 *
 * @module
 */

/** A message as a transport delivers it. */
export interface TransportMessage {
  /** The subject the message was published to. */
  readonly subject: string;
  /** The subject to reply to, if the publisher asked for a reply. */
  readonly reply: string | undefined;
  /** The payload. */
  readonly data: Uint8Array;
  /**
   * A status the server attached, or 0. `503` on a reply subject means the request it answers found no
   * responders (NATS sends it when a request's subject has no subscribers).
   */
  readonly status: number;
  /** The first value of a header, or `undefined` when absent. Names are case-sensitive as in NATS. */
  header(name: string): string | undefined;
  /** Every header, first value each. Allocates; use {@link header} on hot paths. */
  headers(): Record<string, string>;
}

/** Options for {@link Transport.publish}. */
export interface PublishOptions {
  /** The subject a receiver should reply to. */
  reply?: string;
  /** Headers to send. Omit (rather than pass `{}`) to send a plain, header-less message. */
  headers?: Record<string, string>;
}

/** Options for {@link Transport.subscribe}. */
export interface SubscribeOptions {
  /** Queue group: each message goes to one member of the group instead of to every subscriber. */
  queue?: string;
  /** Called when the bus reports an error for this subscription (e.g. a permissions violation). */
  onError?: (err: Error) => void;
}

/** A live subscription. */
export interface TransportSubscription {
  /** Stops delivery. Messages the bus already handed over are still delivered; resolves after that. */
  drain(): Promise<void>;
}

/**
 * The port between RPC logic and a message bus: publish with an optional reply subject and headers,
 * and subscribe with an optional queue group. {@link natsTransport} and {@link memoryTransport} implement
 * it with the same semantics, including the instant no-responders status.
 */
export interface Transport {
  /** Publishes a message. Throws synchronously when it cannot be sent (closed, or over {@link maxPayload}). */
  publish(subject: string, data: Uint8Array, options?: PublishOptions): void;
  /**
   * Subscribes to a subject, which may hold the wildcards `*` (one token) and `>` (the rest).
   * Delivery starts at once on this transport; call {@link flush} before telling another connection
   * that the subscription exists.
   */
  subscribe(
    subject: string,
    onMessage: (message: TransportMessage) => void,
    options?: SubscribeOptions,
  ): TransportSubscription;
  /** Resolves once everything published and subscribed so far has reached the bus. */
  flush(): Promise<void>;
  /** Makes a new unique subject prefix for replies. */
  createInbox(): string;
  /** The largest payload the bus accepts, in bytes. */
  readonly maxPayload: number;
  /** The server this transport is connected to now (`host:port`), for logs; absent for the memory bus. */
  readonly server?: string | undefined;
  /**
   * Calls `listener` each time the connection to the bus comes back after it was lost (messages sent
   * to this connection meanwhile are gone). Returns a function that stops the calls. Optional: a bus
   * that cannot lose its connection (the memory transport) leaves it out.
   */
  onReconnect?(listener: () => void): () => void;
  /**
   * Calls `listener` each time the server refuses this connection a publish or a subscription for
   * want of permission (it says so asynchronously, naming the subject). Returns a function that stops
   * the calls. Optional: a bus without permissions leaves it out.
   */
  onDenied?(listener: (denied: Denied) => void): () => void;
}

/** A publish or subscription the server refused for want of permission. */
export interface Denied {
  readonly operation: "publish" | "subscribe";
  /** The subject it was refused for. */
  readonly subject: string;
  /** The server's words, e.g. `Permissions Violation for Publish to "billing.charge"`. */
  readonly message: string;
}
