/**
 * A fault-injecting {@link Transport}: wraps another (usually the memory transport) and drops, delays,
 * duplicates or reorders the messages it publishes, chosen by subject or by a predicate, or cuts its
 * owner off from everyone. Give the faulty one to the side whose messages should suffer: to a client,
 * its requests; to a responder, its replies.
 *
 * @module
 */
import { readCallMeta } from "../handle.js";
import { subjectMatches } from "../transport/subject.js";
import type {
  PublishOptions,
  SubscribeOptions,
  Transport,
  TransportMessage,
  TransportSubscription,
} from "../transport/types.js";

/** A published request's call id, read by the responder's own rule: ricochet headers, else its call token. */
function callIdOf(options: PublishOptions): string | undefined {
  if (options.reply === undefined) return undefined;
  const headers = options.headers;
  const msg = { reply: options.reply, header: (name: string) => headers?.[name] };
  return readCallMeta(msg, false).id;
}

/** Which published messages a fault applies to. */
export interface FaultRule {
  /** A subject pattern (`*` and `>` wildcards allowed). @default every subject */
  subject?: string;
  /** Requests (messages with a reply subject), replies (without one), or both. @default "any" */
  kind?: "request" | "reply" | "any";
  /** Any other test on the message. */
  when?: (message: {
    subject: string;
    data: Uint8Array;
    reply: string | undefined;
    headers: Readonly<Record<string, string>>;
    /**
     * A request's call id, read as a responder reads it: from its ricochet headers when it has any,
     * else from the call token in its reply subject (a compact call has no headers). Undefined for
     * replies and for requests that carry no id.
     */
    callId: string | undefined;
  }) => boolean;
  /** How many matching messages it applies to, then it is spent. @default every one */
  times?: number;
}

/** A fault in place; `remove()` takes it away. */
export interface Fault {
  /** Matching messages it has applied to so far. */
  readonly hits: number;
  remove(): void;
}

/** A {@link Transport} with faults to inject. */
export interface FaultyTransport extends Transport {
  /** Drops matching messages. */
  drop(rule?: FaultRule): Fault;
  /** Delivers matching messages `ms` later. */
  delay(ms: number, rule?: FaultRule): Fault;
  /** Delivers matching messages `copies` extra times. @param copies @default 1 */
  duplicate(rule?: FaultRule, copies?: number): Fault;
  /** Holds matching messages for `windowMs`, then delivers them newest first. */
  reorder(windowMs: number, rule?: FaultRule): Fault;
  /** Cuts this transport off: nothing it publishes goes out, nothing reaches its subscriptions. */
  cut(): void;
  /** Undoes {@link cut}. */
  heal(): void;
  /** Removes every fault and heals a cut. */
  clear(): void;
}

type Action =
  | { kind: "drop" }
  | { kind: "delay"; ms: number }
  | { kind: "duplicate"; copies: number }
  | { kind: "reorder"; windowMs: number };

interface Installed {
  rule: FaultRule;
  action: Action;
  hits: number;
}

/**
 * Wraps `inner` with faults you add and remove as a test goes. Faults apply to what this transport
 * publishes, in the order they were added; the first matching fault decides a message's fate.
 *
 * @example
 * const bus = memoryTransport();
 * const responderBus = faultyTransport(bus);
 * createResponder(billing, handlers, { transport: responderBus });
 * responderBus.drop({ kind: "reply", times: 1 }); // the first reply is lost: the client retries
 */
export function faultyTransport(inner: Transport): FaultyTransport {
  const faults: Installed[] = [];
  /** Delayed and held deliveries, by their timer. */
  const timers = new Map<NodeJS.Timeout, () => void>();
  let isCut = false;

  const later = (ms: number, fn: () => void) => {
    const t = setTimeout(() => {
      timers.delete(t);
      fn();
    }, ms);
    timers.set(t, fn);
  };

  const add = (rule: FaultRule, action: Action): Fault => {
    const installed: Installed = { rule, action, hits: 0 };
    faults.push(installed);
    return {
      get hits() {
        return installed.hits;
      },
      remove() {
        const i = faults.indexOf(installed);
        if (i >= 0) faults.splice(i, 1);
      },
    };
  };

  const matches = (f: Installed, subject: string, data: Uint8Array, options: PublishOptions) => {
    const { rule } = f;
    if (rule.times !== undefined && f.hits >= rule.times) return false;
    if (rule.subject !== undefined && !subjectMatches(rule.subject, subject)) return false;
    const kind = rule.kind ?? "any";
    if (kind === "request" && options.reply === undefined) return false;
    if (kind === "reply" && options.reply !== undefined) return false;
    if (rule.when !== undefined) {
      const headers = options.headers ?? {};
      const message = { subject, data, reply: options.reply, headers, callId: callIdOf(options) };
      if (!rule.when(message)) return false;
    }
    return true;
  };

  /** Messages held by reorder faults, released newest first. */
  const held = new Map<Installed, Array<() => void>>();

  const faulty: FaultyTransport = {
    get maxPayload() {
      return inner.maxPayload;
    },
    get server() {
      return inner.server;
    },
    publish(subject, data, options = {}) {
      if (isCut) return;
      const send = () => {
        if (!isCut) inner.publish(subject, data, options);
      };
      const fault = faults.find((f) => matches(f, subject, data, options));
      if (fault === undefined) {
        inner.publish(subject, data, options);
        return;
      }
      fault.hits++;
      const { action } = fault;
      if (action.kind === "drop") return;
      if (action.kind === "delay") later(action.ms, send);
      else if (action.kind === "duplicate") {
        inner.publish(subject, data, options);
        for (let i = 0; i < action.copies; i++) send();
      } else {
        let queue = held.get(fault);
        if (queue === undefined) {
          const batch: Array<() => void> = [];
          queue = batch;
          held.set(fault, batch);
          later(action.windowMs, () => {
            held.delete(fault);
            for (const deliver of batch.reverse()) deliver();
          });
        }
        queue.push(send);
      }
    },
    subscribe(
      subject: string,
      onMessage: (message: TransportMessage) => void,
      options?: SubscribeOptions,
    ): TransportSubscription {
      return inner.subscribe(
        subject,
        (message) => {
          if (!isCut) onMessage(message);
        },
        options,
      );
    },
    flush: () => inner.flush(),
    createInbox: () => inner.createInbox(),
    drop: (rule = {}) => add(rule, { kind: "drop" }),
    delay: (ms, rule = {}) => add(rule, { kind: "delay", ms }),
    duplicate: (rule = {}, copies = 1) => add(rule, { kind: "duplicate", copies }),
    reorder: (windowMs, rule = {}) => add(rule, { kind: "reorder", windowMs }),
    cut() {
      isCut = true;
    },
    heal() {
      isCut = false;
    },
    clear() {
      faults.splice(0);
      isCut = false;
      // Held and delayed messages are delivered now rather than lost.
      const pending = [...timers];
      timers.clear();
      held.clear();
      for (const [t, deliver] of pending) {
        clearTimeout(t);
        deliver();
      }
    },
  };
  if (inner.onReconnect) faulty.onReconnect = inner.onReconnect.bind(inner);
  if (inner.onDenied) faulty.onDenied = inner.onDenied.bind(inner);
  return faulty;
}
