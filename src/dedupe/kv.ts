/**
 * A {@link DedupeStore} on a JetStream KV bucket, shared by every instance of a service: the first
 * instance to claim an id (an atomic `create`) runs the handler and keeps its claim alive with a
 * lease; the others watch the key and replay the stored reply, or take the claim over when its lease
 * runs out because its owner died.
 *
 * @module
 */
import type { KV } from "@nats-io/kv";
import type { Claim, DedupeStore, StoredReply } from "./types.js";

/** Options for {@link kvDedupe}. */
export interface KvDedupeOptions {
  /**
   * How long a finished call's reply is replayed, in milliseconds. Also give the bucket a TTL
   * (`max_age`) at least this long, so old entries leave the bucket: `kvm.create(name, { ttl })`.
   * @default 120000
   */
  ttlMs?: number;
  /**
   * How long a claim holds without renewal before another instance may take it over. The owner
   * renews it every `leaseMs / 3` while its handler runs. A shorter lease recovers faster from a
   * dead instance; too short, and a live owner stalled longer than it (a GC pause, a partition)
   * loses its claim, so the call may run twice.
   * @default 30000
   */
  leaseMs?: number;
}

/** A {@link DedupeStore} on KV, with `close()` to stop renewing the claims this instance holds. */
export interface KvDedupeStore extends DedupeStore {
  /** Stops renewing leases (for shutdown): claims still held expire after `leaseMs`. */
  close(): void;
}

type Stored =
  | { s: "running"; f: string; lease: number }
  | { s: "done"; f: string; data: string; headers?: { [name: string]: string }; expires: number }
  | { s: "failed"; f: string; data: string; headers?: { [name: string]: string } };

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const encode = (r: Stored) => encoder.encode(JSON.stringify(r));
const decode = (bytes: Uint8Array): Stored | undefined => {
  try {
    return JSON.parse(decoder.decode(bytes)) as Stored;
  } catch {
    return undefined;
  }
};
const toReply = (r: { data: string; headers?: { [name: string]: string } }): StoredReply =>
  r.headers === undefined
    ? { data: Buffer.from(r.data, "base64") }
    : { data: Buffer.from(r.data, "base64"), headers: r.headers };
const fromReply = (reply: StoredReply) => ({
  data: Buffer.from(reply.data).toString("base64"),
  ...(reply.headers === undefined ? {} : { headers: { ...reply.headers } }),
});

/** A valid KV key for any call id: `k_<id>` when the id is key-safe, else `e_<base64url(id)>`. */
export function kvKey(id: string): string {
  return /^[-_=A-Za-z0-9]+$/.test(id) ? `k_${id}` : `e_${Buffer.from(id).toString("base64url")}`;
}

/**
 * Creates a dedupe store on a KV bucket you opened (ricochet never opens connections or buckets).
 *
 * @example
 * import { Kvm } from "@nats-io/kv";
 * const kv = await new Kvm(nc).create("billing-dedupe", { ttl: 120_000, history: 1 });
 * createResponder(billing, handlers, { transport, dedupe: kvDedupe(kv, { ttlMs: 120_000, leaseMs: 10_000 }) });
 */
export function kvDedupe(kv: KV, options: KvDedupeOptions = {}): KvDedupeStore {
  const ttlMs = options.ttlMs ?? 120_000;
  const leaseMs = options.leaseMs ?? 30_000;
  if (!Number.isFinite(ttlMs) || ttlMs <= 0)
    throw new RangeError(`ttlMs must be a number > 0, got ${options.ttlMs}`);
  if (!Number.isFinite(leaseMs) || leaseMs < 30)
    throw new RangeError(`leaseMs must be a number >= 30, got ${options.leaseMs}`);
  const renewals = new Set<NodeJS.Timeout>();

  const running = (f: string): Stored => ({ s: "running", f, lease: Date.now() + leaseMs });

  const owner = (key: string, f: string, revision: number, deadline = 0): Claim => {
    let rev = revision;
    let renewing: Promise<unknown> = Promise.resolve();
    const timer = setInterval(() => {
      renewing = kv.update(key, encode(running(f)), rev).then(
        (r) => {
          rev = r;
        },
        () => {
          // Someone took the claim over (our lease had lapsed): stop renewing; finish will fail too.
          clearInterval(timer);
          renewals.delete(timer);
        },
      );
    }, leaseMs / 3);
    timer.unref();
    renewals.add(timer);
    return {
      status: "owner",
      finish: async (reply, keep) => {
        clearInterval(timer);
        renewals.delete(timer);
        await renewing;
        if (keep) {
          await kv.update(
            key,
            // Replayed for ttlMs, and never less than until the caller's deadline (plus a margin).
            encode({
              s: "done",
              f,
              ...fromReply(reply),
              expires: Math.max(Date.now() + ttlMs, deadline + 1000),
            }),
            rev,
          );
          return;
        }
        // Not kept: show the reply to instances waiting now, then free the id so a retry runs again.
        const shown = await kv.update(key, encode({ s: "failed", f, ...fromReply(reply) }), rev);
        await kv.delete(key, { previousSeq: shown });
      },
    };
  };

  /** Waits for the running claim on `key` to finish (its reply), vanish or lapse (`undefined`). */
  const waitFor = async (
    key: string,
    lease: number,
    signal: AbortSignal,
  ): Promise<StoredReply | undefined> => {
    if (signal.aborted) return undefined;
    const updates = await kv.watch({ key });
    let lapse: NodeJS.Timeout | undefined;
    const stop = () => updates.stop();
    const arm = (until: number) => {
      clearTimeout(lapse);
      lapse = setTimeout(stop, Math.max(0, until - Date.now()) + 10);
    };
    arm(lease);
    signal.addEventListener("abort", stop, { once: true });
    try {
      for await (const entry of updates) {
        if (entry.operation !== "PUT") return undefined;
        const r = decode(entry.value);
        if (r === undefined) return undefined;
        if (r.s === "running") arm(r.lease);
        else return toReply(r);
      }
      return undefined;
    } finally {
      clearTimeout(lapse);
      signal.removeEventListener("abort", stop);
      updates.stop();
    }
  };

  return {
    close() {
      for (const t of renewals) clearInterval(t);
      renewals.clear();
    },
    async claim(id, fingerprint, deadline) {
      const key = kvKey(id);
      for (let tries = 0; tries < 10; tries++) {
        try {
          return owner(
            key,
            fingerprint,
            await kv.create(key, encode(running(fingerprint))),
            deadline,
          );
        } catch {
          // The key exists (or was just written): read what is there.
        }
        const entry = await kv.get(key);
        if (entry === null || entry.operation !== "PUT") continue; // deleted since: create again
        const r = decode(entry.value);
        const now = Date.now();
        const lapsed =
          r === undefined ||
          (r.s === "done" && r.expires <= now) ||
          (r.s === "running" && r.lease <= now);
        if (lapsed || r.s === "failed") {
          // Expired, abandoned by a dead owner, or a failure that is not kept: take the claim.
          try {
            return owner(
              key,
              fingerprint,
              await kv.update(key, encode(running(fingerprint)), entry.revision),
              deadline,
            );
          } catch {
            continue; // another instance was faster
          }
        }
        if (r.f !== fingerprint) return { status: "conflict" };
        if (r.s === "done") return { status: "done", reply: toReply(r) };
        const lease = r.lease;
        return { status: "running", wait: (signal) => waitFor(key, lease, signal) };
      }
      throw new Error(
        `kvDedupe: could not claim call id ${id} after 10 tries; is the KV bucket healthy?`,
      );
    },
  };
}
