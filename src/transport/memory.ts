/**
 * The in-process transport: the embedded default for examples and unit tests, with the semantics of
 * core NATS that ricochet relies on (wildcards, queue groups, headers, the instant no-responders status,
 * a payload limit, asynchronous delivery).
 *
 * @module
 */
import { PayloadTooLargeError } from "./errors.js";
import { assertValidHeaders } from "./headers.js";
import { isValidPublishSubject, isValidSubscribeSubject, subjectMatches } from "./subject.js";
import type {
  PublishOptions,
  SubscribeOptions,
  Transport,
  TransportMessage,
  TransportSubscription,
} from "./types.js";

/** Options for {@link memoryTransport}. */
export interface MemoryTransportOptions {
  /**
   * The largest payload `publish` accepts, in bytes, like a NATS server's `max_payload`.
   * @default 1048576 (1 MiB, the NATS default)
   */
  maxPayload?: number;
}

/** A {@link Transport} that lives in this process. */
export interface MemoryTransport extends Transport {
  /** Drops every subscription; later `publish` calls throw. */
  close(): Promise<void>;
}

interface Sub {
  pattern: string;
  queue: string | undefined;
  onMessage: (message: TransportMessage) => void;
  active: boolean;
}

const NO_HEADERS: Record<string, string> = Object.freeze({}) as Record<string, string>;

class MemoryMessage implements TransportMessage {
  constructor(
    readonly subject: string,
    readonly reply: string | undefined,
    readonly data: Uint8Array,
    readonly status: number,
    private readonly hdrs: Record<string, string>,
  ) {}
  header(name: string): string | undefined {
    return Object.hasOwn(this.hdrs, name) ? this.hdrs[name] : undefined;
  }
  headers(): Record<string, string> {
    return { ...this.hdrs };
  }
}

/**
 * Creates an in-process transport. Clients and responders that share one instance talk to each other;
 * nothing leaves the process.
 *
 * @example
 * const transport = memoryTransport();
 * const responder = createResponder(contract, handlers, { transport });
 * const client = createClient(contract, { transport });
 */
export function memoryTransport(options: MemoryTransportOptions = {}): MemoryTransport {
  const maxPayload = options.maxPayload ?? 1024 * 1024;
  if (!Number.isSafeInteger(maxPayload) || maxPayload < 1) {
    throw new RangeError(`maxPayload must be a positive integer, got ${options.maxPayload}`);
  }
  let subs: Sub[] = [];
  const rotation = new Map<string, number>();
  let queued: Array<[Sub, TransportMessage]> = [];
  let scheduled = false;
  let closed = false;
  let inboxes = 0;

  const deliver = () => {
    scheduled = false;
    const batch = queued;
    queued = [];
    for (const [sub, message] of batch) {
      // A handler that throws must not stop delivery to the others, as on a real bus.
      try {
        sub.onMessage(message);
      } catch (err) {
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  };
  const enqueue = (sub: Sub, message: TransportMessage) => {
    queued.push([sub, message]);
    if (!scheduled) {
      scheduled = true;
      setImmediate(deliver);
    }
  };

  const route = (message: TransportMessage): number => {
    const groups = new Map<string, Sub[]>();
    let receivers = 0;
    for (const sub of subs) {
      if (!sub.active || !subjectMatches(sub.pattern, message.subject)) continue;
      if (sub.queue === undefined) {
        enqueue(sub, message);
        receivers++;
      } else {
        const members = groups.get(sub.queue);
        if (members) members.push(sub);
        else groups.set(sub.queue, [sub]);
      }
    }
    for (const [queue, members] of groups) {
      const key = `${queue} ${message.subject}`;
      const turn = rotation.get(key) ?? 0;
      rotation.set(key, turn + 1);
      enqueue(members[turn % members.length] as Sub, message);
      receivers++;
    }
    return receivers;
  };

  return {
    maxPayload,
    publish(subject: string, data: Uint8Array, opts: PublishOptions = {}) {
      if (closed)
        throw new Error("memory transport is closed; create a new one with memoryTransport()");
      if (!isValidPublishSubject(subject)) throw new Error(`invalid publish subject '${subject}'`);
      if (data.length > maxPayload) {
        throw new PayloadTooLargeError(data.length, maxPayload);
      }
      const message = new MemoryMessage(
        subject,
        opts.reply,
        // A copy of its own (not `slice()`: on a Buffer, such as an encoded body, that is a view).
        Uint8Array.prototype.slice.call(data),
        0,
        opts.headers ? { ...assertValidHeaders(opts.headers) } : NO_HEADERS,
      );
      const receivers = route(message);
      if (receivers === 0 && opts.reply !== undefined) {
        route(new MemoryMessage(opts.reply, undefined, new Uint8Array(0), 503, NO_HEADERS));
      }
    },
    subscribe(
      subject: string,
      onMessage: (message: TransportMessage) => void,
      opts: SubscribeOptions = {},
    ): TransportSubscription {
      if (closed)
        throw new Error("memory transport is closed; create a new one with memoryTransport()");
      if (!isValidSubscribeSubject(subject))
        throw new Error(`invalid subscribe subject '${subject}'`);
      const sub: Sub = { pattern: subject, queue: opts.queue, onMessage, active: true };
      subs = [...subs, sub];
      return {
        drain: async () => {
          sub.active = false;
          subs = subs.filter((s) => s !== sub);
          await new Promise<void>((resolve) => setImmediate(resolve));
        },
      };
    },
    flush: () => new Promise<void>((resolve) => setImmediate(resolve)),
    createInbox: () => `_INBOX.mem${++inboxes}${Math.random().toString(36).slice(2, 10)}`,
    close: async () => {
      closed = true;
      for (const sub of subs) sub.active = false;
      subs = [];
      queued = [];
    },
  };
}
