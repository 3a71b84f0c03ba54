/**
 * The `DurableQueue` port: what durable calls need from a persistent bus. A client stores a command
 * (deduplicated by its call id); responders take commands off it, at least once each, and settle every
 * one: done, deliver again later, or move it to a dead-letter subject. {@link jetstreamQueue} is the
 * JetStream adapter. Like the transports, a queue knows nothing of contracts.
 *
 * @module
 */
import type { TransportMessage } from "./types.js";

/** The header a durable command carries its caller's reply subject in (a stored message has no reply). */
export const HEADER_REPLY = "Ricochet-Reply";

/**
 * The call id of a command stored under a message id of its own (a replayed dead letter, whose call
 * id the stream's duplicate window may still remember). Dead letters carry it too.
 */
export const HEADER_REPLAY_CALL_ID = "Ricochet-Call-Id";

/** What the queue says about a stored command. */
export interface EnqueueReceipt {
  /** True when a command with this id was already stored (within the queue's duplicate window). */
  readonly duplicate: boolean;
  /** Where it is stored, for messages: e.g. `stream RICOCHET_billing, seq 42`. */
  readonly location: string;
}

/** Why a command is moved to the dead-letter subject. */
export interface DeadLetterReason {
  /** The error code: `INVALID_REQUEST` for a poison command, else the last failure's code. */
  readonly code: string;
  /** The last error, as its caller was (or would have been) told. */
  readonly message: string;
}

/**
 * A command as a queue delivers it. `reply` is the caller's reply subject (from {@link HEADER_REPLY}).
 * Every delivered command must be settled exactly once: {@link ack}, {@link retry} or
 * {@link deadLetter}. Until then the queue keeps it from being redelivered elsewhere.
 */
export interface QueuedCommand extends TransportMessage {
  /** The method the command calls (the last token of its subject). */
  readonly method: string;
  /** How many times it has been delivered, this time included: 1 for the first delivery. */
  readonly delivery: number;
  /** Where it is stored, for messages. */
  readonly location: string;
  /** When it was stored, epoch ms. */
  readonly storedAt: number;
  /**
   * Keeps it from redelivery for `ms` more while it waits here (to be tried again in this process,
   * after a transient failure), beyond the consumer's `holdMs`.
   */
  hold(ms: number): void;
  /** Done: remove it from the queue. */
  ack(): void;
  /** Failed for now: deliver it again, to any consumer, after the queue's backoff for this delivery. */
  retry(): void;
  /**
   * Stores it under the dead-letter subject with its original headers plus the reason, then removes
   * it from the queue. Resolves with the dead-letter subject. Rejects (and leaves the command to be
   * delivered again) when the dead-letter store refuses it: nothing is dropped.
   */
  deadLetter(reason: DeadLetterReason): Promise<string>;
}

/** A running consumer of one service's commands. */
export interface QueueConsumer {
  /**
   * Stops taking commands. Commands already delivered are still handed to the callback; settle them
   * as usual. Resolves once no more will be handed over.
   */
  stop(): Promise<void>;
}

/** Options for {@link DurableQueue.consume}. */
export interface QueueConsumeOptions {
  /** Commands held (delivered and not yet settled) at once by this consumer. */
  window: number;
  /**
   * How long a delivered command is kept from redelivery while it waits and runs here. Past this the
   * consumer stops renewing it, so a handler that hangs does not hold its command for ever: the bus
   * delivers it again (to any consumer) once its ack wait runs out.
   */
  holdMs: number;
  /** Told about failures to fetch or acknowledge commands; the consumer keeps going. */
  onError?: (err: Error) => void;
  /** Told when the existing stream or consumer has settings other than the queue's options. */
  onWarning?: (message: string) => void;
}

/**
 * A persistent queue of commands, per service. The adapter decides the subjects, the stream and the
 * consumer; ricochet decides what to do with each delivery.
 */
export interface DurableQueue {
  /** Deliveries per command before it is dead-lettered. */
  readonly maxDeliver: number;
  /**
   * How long, from when it was stored, a command that fails for a transient reason (a dependency
   * unavailable, `ctx.retryLater()`) keeps being tried again before it is dead-lettered. Such
   * failures do not count toward {@link maxDeliver}.
   */
  readonly transientForMs: number;
  /** The wait before the first retry of a transient failure, ms; it doubles, up to a minute. */
  readonly retryDelayMs: number;
  /**
   * Whether any responder is consuming `service`'s commands now: `"none"` when nothing has ever
   * consumed them (no consumer), `"idle"` when nothing pulls or holds any, `"active"` otherwise.
   * Optional; used to explain a durable call's `TIMEOUT`.
   */
  consumers?(service: string): Promise<"none" | "idle" | "active">;
  /**
   * Stores a command for `service.method` with `headers` (the call id in `Nats-Msg-Id`, the reply
   * subject in {@link HEADER_REPLY}). Resolves once the bus has it on record; rejects when it cannot
   * confirm that within `timeoutMs`.
   */
  enqueue(
    service: string,
    method: string,
    data: Uint8Array,
    headers: Record<string, string>,
    timeoutMs: number,
  ): Promise<EnqueueReceipt>;
  /**
   * Consumes `service`'s commands, sharing them with every other consumer of the service: each command
   * goes to one consumer at a time. Resolves once consuming has started.
   */
  consume(
    service: string,
    onCommand: (command: QueuedCommand) => void,
    options: QueueConsumeOptions,
  ): Promise<QueueConsumer>;
}

/**
 * The queue could not take the command now, and certainly did not store it: JetStream had no leader
 * for its stream (an election after a node was lost). A client retries it until the call's deadline
 * without counting it as an attempt.
 */
export class QueueUnavailableError extends Error {
  override name = "QueueUnavailableError";
}
