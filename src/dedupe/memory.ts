/**
 * An in-process {@link DedupeStore} whose retention follows its callers' deadlines and whose memory is
 * bounded in bytes: a finished call is remembered, with its reply, at least until the deadline its
 * caller sent, plus a margin, whatever the load. When the budget cannot hold every such reply, the
 * oldest replies are dropped but their calls remembered (a duplicate gets `REPLY_DROPPED`); when it
 * cannot hold even that, new calls are refused with `OVERLOADED`, which callers retry. A call inside
 * its caller's deadline is never forgotten, so it never runs twice in this process.
 *
 * @module
 */
import { KeyedSlots } from "../slots.js";
import { ReplyLog } from "./reply-log.js";
import type { Claim, DedupeStore, StoredReply } from "./types.js";

/** Options for {@link memoryDedupe}. */
export interface MemoryDedupeOptions {
  /**
   * The most memory the stored replies may take, in bytes. A finished call takes its reply's size
   * plus about 56 bytes and its id's length until its caller's deadline plus `marginMs`; so size it
   * above `calls per second × (deadline + margin in s) × (reply bytes + id bytes + 56)`: at 40,000
   * calls/s with 5 s deadlines and 200-byte replies, about 65 MB. When that is short, the replies of
   * the oldest calls still inside their deadlines are dropped (their ids are kept: a duplicate gets
   * `REPLY_DROPPED`, never a second run); when even their ids fill it, new calls are refused with
   * `OVERLOADED` until deadlines pass. It may go over by the replies of calls running when it filled,
   * and by calls kept longer for a later caller with the same id.
   * @default 134217728 (128 MiB)
   */
  maxBytes?: number;
  /**
   * An optional replay window, in milliseconds from when the call finished: a reply stays
   * replayable until its caller's deadline plus `marginMs` or until `ttlMs` after it finished,
   * whichever is later. So a call made again with the same id after its deadline (a user-level
   * idempotency key reused minutes later, say) is answered from the store within `ttlMs`. Best
   * effort: replies past their deadline are the first to go when the budget needs room, and under
   * steady load the store then fills to `maxBytes`. `0` keeps each reply only for its caller's
   * deadline plus `marginMs`, so memory follows load.
   * @default 0
   */
  ttlMs?: number;
  /**
   * How long past the caller's deadline a reply is still protected from eviction, in milliseconds:
   * room for the network and timers between caller and responder.
   * @default 1000
   */
  marginMs?: number;
  /**
   * The longest a caller's deadline is honoured, in milliseconds: a call whose caller sent a longer
   * one (up to 24.8 days fit in `Ricochet-Timeout`) is protected only this long, so that a few such
   * calls cannot hold the budget for days. Callers whose retries span longer need `kvDedupe`.
   * @default 600000 (10 minutes)
   */
  maxRetentionMs?: number;
  /** @internal The clock, for tests. @default Date.now */
  now?: () => number;
}

/** A {@link DedupeStore} with its size, for monitoring and tests. */
export interface MemoryDedupeStore extends DedupeStore {
  /** Answers at once, from memory. */
  claim(id: string, fingerprint: string, deadline?: number): Claim;
  /** Calls known now: running, plus finished ones whose replies are held. */
  readonly size: number;
  /** Bytes the stored replies take now (their segments). */
  readonly bytes: number;
  /** The budget, `maxBytes`. */
  readonly maxBytes: number;
}

/**
 * A call running now, with the duplicates waiting for it. It is also the owner's claim: one object a
 * call, no closures.
 */
class Running {
  readonly status = "owner";
  waiters: Array<(reply: StoredReply | undefined) => void> | undefined;
  /** Its reply, once it finished. */
  reply: StoredReply | undefined;
  constructor(
    readonly id: string,
    /** The id's hash in the table of running calls, and in the log (hashed once each, at the claim). */
    readonly runningHash: number,
    readonly logHash: number,
    readonly fingerprint: string,
    /** The latest deadline of its callers (the owner's, or a later one's that joined it). */
    public deadline: number,
    /** Bytes set aside for its reply at admission. */
    readonly reserved: number,
    private readonly onFinish: (entry: Running, reply: StoredReply, keep: boolean) => void,
  ) {}

  finish(reply: StoredReply, keep: boolean): void {
    this.onFinish(this, reply, keep);
  }
}

const CONFLICT: Claim = Object.freeze({ status: "conflict" });
const DROPPED: Claim = Object.freeze({ status: "dropped" });

/**
 * Creates an in-process dedupe store for one responder (or several in one process). Duplicates that
 * arrive while the first is running wait for it and share its reply; later ones get the stored reply.
 *
 * @throws RangeError naming the option when one is out of range.
 * @example
 * createResponder(billing, handlers, { transport, dedupe: memoryDedupe({ maxBytes: 256 * 2 ** 20 }) });
 */
export function memoryDedupe(options: MemoryDedupeOptions = {}): MemoryDedupeStore {
  if ((options as { maxEntries?: unknown }).maxEntries !== undefined) {
    throw new TypeError(
      "memoryDedupe(): maxEntries was replaced by maxBytes (a budget in bytes; replies are kept until their callers' deadlines)",
    );
  }
  const maxBytes = options.maxBytes ?? 128 * 2 ** 20;
  const ttlMs = options.ttlMs ?? 0;
  const marginMs = options.marginMs ?? 1000;
  const maxRetentionMs = options.maxRetentionMs ?? 600_000;
  const now = options.now ?? Date.now;
  if (!Number.isSafeInteger(maxBytes) || maxBytes < 65536)
    throw new RangeError(`maxBytes must be an integer >= 65536, got ${options.maxBytes}`);
  if (!Number.isFinite(ttlMs) || ttlMs < 0)
    throw new RangeError(`ttlMs must be a number >= 0, got ${options.ttlMs}`);
  if (!Number.isFinite(marginMs) || marginMs < 0)
    throw new RangeError(`marginMs must be a number >= 0, got ${options.marginMs}`);
  if (!Number.isFinite(maxRetentionMs) || maxRetentionMs < 0)
    throw new RangeError(`maxRetentionMs must be a number >= 0, got ${options.maxRetentionMs}`);

  const log = new ReplyLog(maxBytes);
  const running = new KeyedSlots<Running>();
  /** Bytes set aside for the replies of the calls running now. */
  let reserved = 0;
  /** A moving average of the bytes a reply takes in the log. */
  let average = 256;
  /** The most set aside for one reply: larger ones are kept as dropped replies' records. */
  const maxShare = Math.floor(maxBytes / 16);

  /** Until when a call whose callers' latest deadline is `deadline` is protected, as of `t`. */
  const protection = (deadline: number, t: number) =>
    Math.min(Math.max(deadline, t), t + maxRetentionMs) + marginMs;

  const finish = (entry: Running, reply: StoredReply, keep: boolean) => {
    const id = entry.id;
    if (running.getAt(id, entry.runningHash) !== entry) return; // finished already
    running.deleteAt(id, entry.runningHash);
    reserved -= entry.reserved;
    if (keep) {
      const t = now();
      const protectUntil = protection(entry.deadline, t);
      const expiresAt = Math.max(protectUntil, t + ttlMs);
      // The bytes it took, not its size: a reply too large to keep is kept as a small record.
      const stored = log.append(
        id,
        entry.fingerprint,
        reply,
        protectUntil,
        expiresAt,
        t,
        entry.logHash,
      );
      average += (stored - average) / 16;
    }
    entry.reply = reply;
    const waiters = entry.waiters;
    entry.waiters = undefined;
    if (waiters) for (const w of waiters) w(reply);
  };

  const joined = (entry: Running): Claim => ({
    status: "running",
    wait: (signal) =>
      new Promise<StoredReply | undefined>((resolve) => {
        if (entry.reply !== undefined) return resolve(entry.reply); // finished since the claim
        if (signal.aborted) return resolve(undefined);
        const done = (reply: StoredReply | undefined) => {
          signal.removeEventListener("abort", onAbort);
          resolve(reply);
        };
        const onAbort = () => {
          const waiters = entry.waiters;
          if (waiters) waiters.splice(waiters.indexOf(done), 1);
          resolve(undefined);
        };
        signal.addEventListener("abort", onAbort, { once: true });
        if (entry.waiters) entry.waiters.push(done);
        else entry.waiters = [done];
      }),
  });

  return {
    get size() {
      return running.size + log.count;
    },
    get bytes() {
      return log.bytes;
    },
    maxBytes,
    claim(id, fingerprint, deadline): Claim {
      const runningHash = running.hashOf(id);
      const r = running.getAt(id, runningHash);
      if (r !== undefined) {
        if (r.fingerprint !== fingerprint) return CONFLICT;
        // Kept for the latest deadline of everyone waiting for it, not just the first caller's.
        if (deadline !== undefined && deadline > r.deadline) r.deadline = deadline;
        return joined(r);
      }
      const t = now();
      log.dropExpired(t);
      const logHash = log.hashOf(id);
      const at = log.find(id, t, logHash);
      if (at !== -1) {
        if (!log.fingerprintIs(at, fingerprint)) return CONFLICT;
        // Read first: renewing moves the record, and may free the memory it was in.
        const stored = log.reply(at);
        if (deadline !== undefined) {
          // A caller with a later deadline than the first: it may retry until then.
          const protectUntil = protection(deadline, t);
          if (protectUntil > log.protectedUntil(at))
            log.renew(at, id, fingerprint, protectUntil, Math.max(protectUntil, t + ttlMs), t);
        }
        return stored === undefined ? DROPPED : { status: "done", reply: stored };
      }
      // Admission: room for this reply and those of every call running now, or refuse.
      // (The index grows in steps: count the next one for every call that will finish.)
      const share = Math.min(Math.ceil(average * 2), maxShare);
      const need = share + log.indexGrowth(running.size + 1);
      if (log.used + reserved + need > maxBytes && !log.makeRoom(reserved + need, t)) {
        return { status: "full", retryAfterMs: log.nextEvictable(t) - t };
      }
      reserved += share;
      const entry = new Running(
        id,
        runningHash,
        logHash,
        fingerprint,
        deadline ?? t,
        share,
        finish,
      );
      running.setAt(id, runningHash, entry);
      return entry;
    },
  };
}
