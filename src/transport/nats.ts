/**
 * The core NATS transport over a nats.js v3 connection (`@nats-io/transport-node`, `wsconnect`, …).
 *
 * @module
 */
import { createInbox, type Msg, type NatsConnection } from "@nats-io/nats-core";
import { PayloadTooLargeError } from "./errors.js";
import { assertValidHeaders } from "./headers.js";
import { headersOf, RecordHeaders, recordOf } from "./nats-headers.js";
import type {
  Denied,
  PublishOptions,
  SubscribeOptions,
  Transport,
  TransportMessage,
  TransportSubscription,
} from "./types.js";

/** Options for {@link natsTransport}. */
export interface NatsTransportOptions {
  /**
   * Prefix for reply subjects, for accounts whose permissions only allow certain inboxes.
   * @default "_INBOX"
   */
  inboxPrefix?: string;
}

const NO_HEADERS: Readonly<Record<string, string>> = Object.freeze({});

class NatsMessage implements TransportMessage {
  readonly status: number;
  #headers: Readonly<Record<string, string>> | undefined;
  constructor(private readonly msg: Msg) {
    const h = headersOf(msg);
    this.status = h === undefined ? 0 : h.code;
    // Without headers (a plain request, a compact call, a successful reply): nothing to read later.
    if (h === undefined) this.#headers = NO_HEADERS;
  }
  get subject(): string {
    return this.msg.subject;
  }
  get reply(): string | undefined {
    return this.msg.reply || undefined;
  }
  get data(): Uint8Array {
    return this.msg.data;
  }
  /** The headers as a record, read once: nats.js's own lookups search and allocate on every call. */
  #record(): Readonly<Record<string, string>> {
    if (this.#headers === undefined) {
      const h = headersOf(this.msg);
      this.#headers = h === undefined ? NO_HEADERS : recordOf(h);
    }
    return this.#headers;
  }
  header(name: string): string | undefined {
    const record = this.#record();
    return Object.hasOwn(record, name) ? record[name] : undefined;
  }
  headers(): Record<string, string> {
    return { ...this.#record() };
  }
}

/**
 * Creates a {@link Transport} over a connected nats.js v3 connection. The connection stays yours:
 * ricochet never connects, drains or closes it.
 *
 * @example
 * import { connect } from "@nats-io/transport-node";
 * // Say which server: with `servers` undefined, nats.js connects to 127.0.0.1:4222 without a word.
 * const nc = await connect({ servers: process.env.NATS_URL ?? "nats://127.0.0.1:4222" });
 * const transport = natsTransport(nc);
 */
export function natsTransport(nc: NatsConnection, options: NatsTransportOptions = {}): Transport {
  const inboxPrefix = options.inboxPrefix;
  const reconnected = new Set<() => void>();
  const deniedListeners = new Set<(denied: Denied) => void>();
  let watching = false;
  /** Reads the connection's status events once, for every listener, while any listens. */
  const watchStatus = async () => {
    watching = true;
    try {
      for await (const s of nc.status()) {
        if (s.type === "reconnect") {
          for (const listener of [...reconnected]) listener();
        } else if (s.type === "error" && s.error.name === "PermissionViolationError") {
          // By name: a second copy of nats-core in node_modules would defeat instanceof.
          const e = s.error as Error & { operation?: string; subject?: string };
          const denied: Denied = {
            operation: e.operation === "publish" ? "publish" : "subscribe",
            subject: e.subject ?? "",
            message: e.message,
          };
          for (const listener of [...deniedListeners]) listener(denied);
        }
      }
    } catch {
      // The connection closed: no more events.
    } finally {
      watching = false;
    }
  };
  /** Adds `listener` to `set`, starting the status watcher; returns its removal. */
  const listen = <T>(set: Set<T>, listener: T) => {
    set.add(listener);
    if (!watching && !nc.isClosed()) void watchStatus();
    return () => {
      set.delete(listener);
    };
  };
  return {
    onReconnect: (listener: () => void) => listen(reconnected, listener),
    onDenied: (listener: (denied: Denied) => void) => listen(deniedListeners, listener),
    get server() {
      return nc.getServer();
    },
    get maxPayload() {
      return nc.info?.max_payload ?? 1024 * 1024;
    },
    publish(subject: string, data: Uint8Array, opts: PublishOptions = {}) {
      const headers =
        opts.headers === undefined
          ? undefined
          : new RecordHeaders(assertValidHeaders(opts.headers));
      try {
        if (headers === undefined) {
          nc.publish(subject, data, opts.reply === undefined ? undefined : { reply: opts.reply });
        } else if (opts.reply === undefined) {
          nc.publish(subject, data, { headers });
        } else {
          nc.publish(subject, data, { reply: opts.reply, headers });
        }
      } catch (err) {
        const limit = nc.info?.max_payload;
        if (limit !== undefined && err instanceof Error && err.message.includes("max_payload")) {
          throw new PayloadTooLargeError(data.length, limit, { cause: err });
        }
        throw err;
      }
    },
    subscribe(
      subject: string,
      onMessage: (message: TransportMessage) => void,
      opts: SubscribeOptions = {},
    ): TransportSubscription {
      const onError = opts.onError;
      const sub = nc.subscribe(subject, {
        ...(opts.queue === undefined ? {} : { queue: opts.queue }),
        callback: (err, msg) => {
          if (err) return onError?.(err);
          // An exception here would stop the connection's reader; report it instead.
          try {
            onMessage(new NatsMessage(msg));
          } catch (thrown) {
            onError?.(thrown instanceof Error ? thrown : new Error(String(thrown)));
          }
        },
      });
      return { drain: () => (sub.isClosed() || nc.isClosed() ? Promise.resolve() : sub.drain()) };
    },
    flush: () => nc.flush(),
    createInbox: () => createInbox(inboxPrefix),
  };
}
