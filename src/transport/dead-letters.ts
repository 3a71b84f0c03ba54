/**
 * Dead letters of a service's durable commands: list them, inspect one, and replay it once the cause
 * is fixed. A replay keeps the command's call id, so the responders' dedupe store still recognises it,
 * and works at any time: it is stored under a new message id, so the command stream's duplicate window
 * (which still remembers the original) does not drop it.
 *
 * @module
 */
import type { JetStreamClient, JetStreamManager, StoredMsg } from "@nats-io/jetstream";
import type { JetStreamContext } from "./jetstream.js";
import { streamNames } from "./jetstream.js";
import { RecordHeaders, recordOf } from "./nats-headers.js";
import { HEADER_REPLAY_CALL_ID, HEADER_REPLY } from "./queue.js";

/** One dead letter, as {@link DeadLetters.list} and {@link DeadLetters.get} return it. */
export interface DeadLetter {
  /** Its sequence in the dead-letter stream: what `get`, `replay` and `remove` take. */
  readonly seq: number;
  /** The method it called. */
  readonly method: string;
  /** The call id it ran under (kept by a replay). */
  readonly callId: string | undefined;
  /** The last failure's code (`INTERNAL`, `INVALID_REQUEST`, `UNAVAILABLE`, …). */
  readonly code: string;
  /** The last failure's message. */
  readonly reason: string;
  /** Deliveries it had. */
  readonly deliveries: number;
  /** Where it came from: the command subject and its stream position. */
  readonly from: string;
  /** When it was dead-lettered. */
  readonly at: Date;
  /** The command's body, as stored. */
  readonly data: Uint8Array;
  /** Every header it carries. */
  readonly headers: Readonly<Record<string, string>>;
}

/** Options for {@link deadLetters}: the same prefixes as the service's {@link jetstreamQueue}. */
export interface DeadLettersOptions {
  /** @default "ricochet.durable" */
  subjectPrefix?: string;
}

/** The dead letters of one service. */
export interface DeadLetters {
  /** Up to `limit` dead letters, oldest first. @param limit @default 100 */
  list(options?: { limit?: number }): Promise<DeadLetter[]>;
  /** The dead letter at `seq`, or `undefined` when there is none (replayed or removed). */
  get(seq: number): Promise<DeadLetter | undefined>;
  /**
   * Stores the command again on the service's queue, under its original call id, and removes the dead
   * letter once the queue has confirmed it. Its result goes to `reply` when given (an inbox you
   * subscribed to); otherwise call the method again with the same id to get it from the dedupe store.
   * Resolves with where the command is stored. Rejects, leaving the dead letter, when it cannot.
   */
  replay(seq: number, options?: { reply?: string }): Promise<{ location: string }>;
  /** Deletes the dead letter at `seq` for good. */
  remove(seq: number): Promise<void>;
}

const DEAD_HEADERS = [
  "Ricochet-Dead-Code",
  "Ricochet-Dead-Reason",
  "Ricochet-Deliveries",
  "Ricochet-Dead-From",
];

/**
 * Opens the dead letters of `service` (stream `RICOCHET_<service>_DEAD`).
 *
 * @example
 * const dead = deadLetters(jetstream(nc), "orders");
 * for (const letter of await dead.list()) console.log(letter.seq, letter.callId, letter.code, letter.reason);
 * await dead.replay(3); // after fixing the cause
 */
export function deadLetters(
  context: JetStreamContext,
  service: string,
  options: DeadLettersOptions = {},
): DeadLetters {
  const js = context as unknown as JetStreamClient;
  const prefix = options.subjectPrefix ?? "ricochet.durable";
  const stream = streamNames(service).deadLetters;
  let manager: Promise<JetStreamManager> | undefined;
  const jsm = () => {
    manager ??= js.jetstreamManager();
    return manager;
  };

  const read = (m: StoredMsg): DeadLetter => {
    const headers = m.header === undefined ? {} : recordOf(m.header);
    const method = m.subject.slice(m.subject.lastIndexOf(".") + 1);
    return {
      seq: m.seq,
      method,
      callId: headers[HEADER_REPLAY_CALL_ID],
      code: headers["Ricochet-Dead-Code"] ?? "",
      reason: headers["Ricochet-Dead-Reason"] ?? "",
      deliveries: Number(headers["Ricochet-Deliveries"] ?? 0),
      from: headers["Ricochet-Dead-From"] ?? "",
      at: m.time,
      data: m.data,
      headers,
    };
  };

  const get = async (seq: number): Promise<DeadLetter | undefined> => {
    try {
      const m = await (await jsm()).streams.getMessage(stream, { seq });
      return m === null ? undefined : read(m);
    } catch (err) {
      if ((err as { code?: unknown; status?: unknown }).code === 10037) return undefined;
      throw err;
    }
  };

  return {
    async list({ limit = 100 } = {}) {
      const { state } = await (await jsm()).streams.info(stream);
      const out: DeadLetter[] = [];
      for (let seq = state.first_seq; seq <= state.last_seq && out.length < limit; seq++) {
        const letter = await get(seq);
        if (letter !== undefined) out.push(letter);
      }
      return out;
    },
    get,
    async replay(seq, { reply } = {}) {
      const letter = await get(seq);
      if (letter === undefined) {
        throw new Error(`deadLetters(): no dead letter ${seq} in ${stream} (replayed or removed?)`);
      }
      const headers: Record<string, string> = { ...letter.headers };
      for (const h of DEAD_HEADERS) delete headers[h];
      delete headers[HEADER_REPLY];
      if (reply !== undefined) headers[HEADER_REPLY] = reply;
      const callId = letter.callId ?? headers["Nats-Msg-Id"];
      if (callId !== undefined) headers[HEADER_REPLAY_CALL_ID] = callId;
      // Its own message id: the command stream may still remember the call id as a duplicate.
      headers["Nats-Msg-Id"] = `${callId ?? "call"}.replay.${stream}.${seq}`;
      const ack = await js.publish(`${prefix}.${service}.${letter.method}`, letter.data, {
        headers: new RecordHeaders(headers),
      });
      await (await jsm()).streams.deleteMessage(stream, seq);
      return { location: `stream ${ack.stream}, seq ${ack.seq}` };
    },
    async remove(seq) {
      await (await jsm()).streams.deleteMessage(stream, seq);
    },
  };
}
