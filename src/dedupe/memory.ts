/**
 * An in-process {@link DedupeStore}: bounded by entry count (least recently used go first) and by age.
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
  /** Entries held now: running plus finished and not yet expired or evicted. */
  readonly size: number;
}

type Entry =
  | {
      state: "running";
      fingerprint: string;
      waiters: Array<(reply: StoredReply | undefined) => void>;
    }
  | { state: "done"; fingerprint: string; reply: StoredReply; expiresAt: number };

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
  // Map iteration order is insertion order: re-inserting on use keeps the least recently used first.
  const entries = new Map<string, Entry>();
  let finished = 0;

  /** Drops expired entries from the least recently used end, and the oldest past `maxEntries`. */
  const evict = () => {
    const t = now();
    for (const [id, e] of entries) {
      if (e.state === "running") continue;
      if (finished <= maxEntries && e.expiresAt > t) break;
      entries.delete(id);
      finished--;
    }
  };

  const owner = (id: string, fingerprint: string): Claim => {
    const entry: Entry = { state: "running", fingerprint, waiters: [] };
    entries.set(id, entry);
    return {
      status: "owner",
      finish: async (reply, keep) => {
        if (entries.get(id) !== entry) return;
        entries.delete(id);
        if (keep) {
          entries.set(id, { state: "done", fingerprint, reply, expiresAt: now() + ttlMs });
          finished++;
          evict();
        }
        for (const w of entry.waiters) w(reply);
      },
    };
  };

  return {
    get size() {
      return entries.size;
    },
    async claim(id, fingerprint) {
      const e = entries.get(id);
      if (e === undefined) return owner(id, fingerprint);
      if (e.state === "done" && e.expiresAt <= now()) {
        entries.delete(id);
        finished--;
        return owner(id, fingerprint);
      }
      if (e.fingerprint !== fingerprint) return { status: "conflict" };
      if (e.state === "done") {
        entries.delete(id);
        entries.set(id, e);
        return { status: "done", reply: e.reply };
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
              e.waiters.splice(e.waiters.indexOf(done), 1);
              resolve(undefined);
            };
            signal.addEventListener("abort", onAbort, { once: true });
            e.waiters.push(done);
          }),
      };
    },
  };
}
