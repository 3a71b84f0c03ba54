/**
 * An in-process {@link DedupeStore}: at most `maxEntries` finished calls (least recently used go
 * first), each replayed for at most `ttlMs`.
 *
 * @module
 */
import type { Claim, DedupeStore, StoredReply } from "./types.js";

/** Options for {@link memoryDedupe}. */
export interface MemoryDedupeOptions {
  /**
   * How long a finished call's reply is kept for replay, in milliseconds. Retries must arrive within
   * it to be deduplicated; set it above your callers' longest deadline.
   * @default 120000
   */
  ttlMs?: number;
  /**
   * The most finished calls kept; past it, the least recently used are forgotten first. Calls still
   * running are never evicted (they are bounded by the responder's concurrency and queue).
   * @default 10000
   */
  maxEntries?: number;
  /** @internal The clock, for tests. @default Date.now */
  now?: () => number;
}

/** A {@link DedupeStore} with its size, for monitoring and tests. */
export interface MemoryDedupeStore extends DedupeStore {
  /**
   * Entries held now: running, plus finished ones not yet evicted. An expired entry is dropped when its
   * id arrives again or when it is the least recently used past `maxEntries`, so it may still count.
   */
  readonly size: number;
  /** @internal Slots in the use-order queue, for the test that it stays bounded. */
  readonly queueLength: number;
}

/** One call id: running (with the duplicates waiting for it), then done (with its reply). */
class Entry {
  state: "running" | "done" = "running";
  reply: StoredReply | undefined;
  expiresAt = 0;
  /** The latest use; a queue slot with an older stamp is stale. */
  stamp = 0;
  waiters: Array<(reply: StoredReply | undefined) => void> | undefined;
  constructor(readonly fingerprint: string) {}
}

/**
 * Creates an in-process dedupe store for one responder (or several in one process). Duplicates that
 * arrive while the first is running wait for it and share its reply; later ones get the stored reply.
 *
 * @throws RangeError naming the option when `ttlMs` or `maxEntries` is out of range.
 * @example
 * createResponder(billing, handlers, { transport, dedupe: memoryDedupe({ ttlMs: 120_000, maxEntries: 10_000 }) });
 */
export function memoryDedupe(options: MemoryDedupeOptions = {}): MemoryDedupeStore {
  const ttlMs = options.ttlMs ?? 120_000;
  const maxEntries = options.maxEntries ?? 10_000;
  const now = options.now ?? Date.now;
  if (!Number.isFinite(ttlMs) || ttlMs <= 0)
    throw new RangeError(`ttlMs must be a number > 0, got ${options.ttlMs}`);
  if (!Number.isInteger(maxEntries) || maxEntries < 1) {
    throw new RangeError(`maxEntries must be an integer >= 1, got ${options.maxEntries}`);
  }
  const entries = new Map<string, Entry>();
  let finished = 0;
  // Least recently used first: finished entries in order of use. A replay appends the entry again with
  // a newer stamp, so older slots for it go stale and are skipped. (Re-inserting into the Map instead
  // leaves holes that every later scan from the front has to step over: 3 µs a call at 10,000 entries.)
  let ids: string[] = [];
  let used: Entry[] = [];
  let stamps: number[] = [];
  let head = 0;
  let clock = 0;

  const touch = (id: string, e: Entry) => {
    e.stamp = ++clock;
    ids.push(id);
    used.push(e);
    stamps.push(e.stamp);
  };

  /** Forgets the least recently used finished calls while there are more than `maxEntries`. */
  const evict = () => {
    while (finished > maxEntries && head < ids.length) {
      const id = ids[head] as string;
      const e = used[head] as Entry;
      const stamp = stamps[head];
      head++;
      if (e.stamp !== stamp || entries.get(id) !== e) continue; // stale: used again since, or gone
      entries.delete(id);
      finished--;
    }
    // Keep the queue within a constant factor of the entries it describes.
    if (ids.length - head > 2 * finished + 1024) compact();
    else if (head > 1024 && head * 2 > ids.length) {
      ids = ids.slice(head);
      used = used.slice(head);
      stamps = stamps.slice(head);
      head = 0;
    }
  };

  /** Drops stale slots (replayed since, or forgotten), keeping the order of the live ones. */
  const compact = () => {
    const keep: number[] = [];
    for (let i = head; i < ids.length; i++) {
      const e = used[i] as Entry;
      if (e.stamp === stamps[i] && entries.get(ids[i] as string) === e) keep.push(i);
    }
    ids = keep.map((i) => ids[i] as string);
    used = keep.map((i) => used[i] as Entry);
    stamps = keep.map((i) => stamps[i] as number);
    head = 0;
  };

  const forget = (id: string) => {
    entries.delete(id);
    finished--;
  };

  const owner = (id: string, fingerprint: string): Claim => {
    const entry = new Entry(fingerprint);
    entries.set(id, entry);
    return {
      status: "owner",
      finish: (reply, keep) => {
        if (entry.state !== "running" || entries.get(id) !== entry) return; // finished already
        entries.delete(id);
        if (keep) {
          entry.state = "done";
          entry.reply = reply;
          entry.expiresAt = now() + ttlMs;
          entries.set(id, entry);
          finished++;
          touch(id, entry);
          evict();
        }
        entry.state = "done";
        const waiters = entry.waiters;
        entry.waiters = undefined;
        if (waiters) for (const w of waiters) w(reply);
      },
    };
  };

  return {
    get size() {
      return entries.size;
    },
    get queueLength() {
      return ids.length - head;
    },
    claim(id, fingerprint): Claim {
      const e = entries.get(id);
      if (e === undefined) return owner(id, fingerprint);
      if (e.state === "done" && e.expiresAt <= now()) {
        forget(id);
        return owner(id, fingerprint);
      }
      if (e.fingerprint !== fingerprint) return { status: "conflict" };
      if (e.state === "done") {
        touch(id, e);
        evict();
        return { status: "done", reply: e.reply as StoredReply };
      }
      return {
        status: "running",
        wait: (signal) =>
          new Promise<StoredReply | undefined>((resolve) => {
            if (signal.aborted) return resolve(undefined);
            const done = (reply: StoredReply | undefined) => {
              signal.removeEventListener("abort", onAbort);
              resolve(reply);
            };
            const onAbort = () => {
              const waiters = e.waiters;
              if (waiters) waiters.splice(waiters.indexOf(done), 1);
              resolve(undefined);
            };
            signal.addEventListener("abort", onAbort, { once: true });
            if (e.waiters) e.waiters.push(done);
            else e.waiters = [done];
          }),
      };
    },
  };
}
