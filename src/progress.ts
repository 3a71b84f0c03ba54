/**
 * Progress messages: a responder that holds a call longer than half of its caller's attempt window
 * tells the caller, on the call's reply subject, that the call is still in progress here, and again
 * every half window until it replies. A ricochet caller then extends the attempt instead of retrying
 * it onto another instance, where it would run a second time. Only callers that ask for them (the
 * `Ricochet-Progress` request header, or a window above 0 in the call token) get them: a plain NATS request takes the first message on its
 * reply subject as the reply, so it only ever gets the one reply.
 *
 * One timer per responder, ticking only while such calls are held, checks them all: a fast call
 * costs a set insertion and deletion, never a timer of its own.
 *
 * @module
 */
import type { Logger } from "pino";
import { HEADER_PROGRESS, type INVALID, MAX_BUDGET_MS } from "./protocol.js";
import { SlotSet } from "./slots.js";
import type { Transport } from "./transport/types.js";

/** How often held calls are checked, in ms: the most a progress message is late. */
export const PROGRESS_TICK_MS = 10;
/** The shortest interval between progress messages for one call, in ms. */
export const MIN_PROGRESS_MS = 20;

/** A call held by the responder whose caller asked for progress messages. */
export interface HeldCall {
  /** Where the progress messages go: the call's reply subject. */
  readonly reply: string;
  /** Epoch ms when the next progress message is due. */
  due: number;
  /** Ms between progress messages. */
  readonly every: number;
  /** Epoch ms: the call's deadline, after which its caller has stopped waiting. */
  readonly deadline: number;
  /** Its handle in the tracker's set. */
  slot: number;
}

/** Tracks the held calls of one responder and sends their progress messages. */
export class ProgressTracker {
  readonly #held = new SlotSet<HeldCall>();
  readonly #headers: Record<string, string>;
  readonly #empty = new Uint8Array(0);
  #timer: NodeJS.Timeout | undefined;
  #lastWarning = 0;

  constructor(
    private readonly transport: Transport,
    instanceId: string,
    private readonly log: Logger,
  ) {
    this.#headers = { [HEADER_PROGRESS]: instanceId };
  }

  /**
   * Starts tracking a call received at `received` if its caller asked for progress (`windowMs`, the
   * caller's attempt window as `Ricochet-Progress` or its call token says, parsed) and it can be
   * replied to, until its deadline (`received + budgetMs`). Returns the handle to pass to
   * {@link release}, or `undefined` when there is nothing to track.
   */
  hold(
    reply: string | undefined,
    windowMs: number | typeof INVALID | undefined,
    received: number,
    budgetMs: number,
  ): HeldCall | undefined {
    if (reply === undefined || typeof windowMs !== "number" || windowMs === 0) return undefined;
    const every = Math.max(MIN_PROGRESS_MS, Math.floor(Math.min(windowMs, MAX_BUDGET_MS) / 2));
    const deadline = received + Math.min(budgetMs, MAX_BUDGET_MS);
    const call: HeldCall = { reply, due: received + every, every, deadline, slot: 0 };
    call.slot = this.#held.add(call);
    if (this.#timer === undefined) {
      this.#timer = setInterval(tick, PROGRESS_TICK_MS, this);
      this.#timer.unref();
    }
    return call;
  }

  /** Stops tracking a call: it was answered (or will never be). */
  release(call: HeldCall | undefined): void {
    if (call === undefined) return;
    this.#held.delete(call.slot, call);
    if (this.#held.size === 0 && this.#timer !== undefined) {
      clearInterval(this.#timer);
      this.#timer = undefined;
    }
  }

  /** Sends the progress messages that are due. */
  tick(): void {
    const now = Date.now();
    for (const call of this.#held.values()) {
      if (call.due > now) continue;
      if (now >= call.deadline) {
        // Its caller has stopped waiting: a handler still running past it proves nothing to anyone.
        this.release(call);
        continue;
      }
      call.due = now + call.every;
      try {
        this.transport.publish(call.reply, this.#empty, { headers: this.#headers });
      } catch (err) {
        // The reply will fail the same way; the caller's retry covers a lost progress message.
        if (now - this.#lastWarning >= 1000) {
          this.#lastWarning = now;
          this.log.warn({ err, reply: call.reply }, "could not send a progress message");
        }
      }
    }
  }
}

function tick(tracker: ProgressTracker): void {
  tracker.tick();
}
