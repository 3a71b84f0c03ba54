/**
 * A {@link DedupeStore} on a JetStream KV bucket, shared by every instance of a service: the first
 * instance to claim an id (an atomic `create`) runs the handler and keeps its claim alive with a
 * lease; the others watch the key and replay the stored reply, or take the claim over when its lease
 * runs out because its owner died.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import type { KV } from "@nats-io/kv";

/**
 * A KV bucket from `@nats-io/kv` (`await new Kvm(nc).open(name)`). Typed by shape only, so ricochet's
 * published types never import the optional peer.
 */
export interface KvBucket {
  create(...args: never[]): Promise<unknown>;
  update(...args: never[]): Promise<unknown>;
  get(...args: never[]): Promise<unknown>;
  delete(...args: never[]): Promise<unknown>;
  watch(...args: never[]): Promise<unknown>;
}

import { nanoid } from "nanoid";
import { permissionError } from "../transport/errors.js";
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
  | { s: "running"; f: string; o?: string; lease: number }
  | {
      s: "done";
      f: string;
      o?: string;
      data: string;
      headers?: { [name: string]: string };
      expires: number;
    }
  | { s: "failed"; f: string; o?: string; data: string; headers?: { [name: string]: string } };

const decoder = new TextDecoder();
/** By `Buffer.from`, which cuts small buffers from a pool, not `TextEncoder` (see `encodeBody`). */
const encode = (r: Stored): Uint8Array => Buffer.from(JSON.stringify(r), "utf8");
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
/** Waits `ms` without keeping the process alive. */
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms).unref());

/** Whether `err` says the bucket could not answer now (a timeout, no leader), not that it refused. */
const unavailable = (err: unknown) =>
  err instanceof Error &&
  /timeout|timed out|503|no responders|unavailable/i.test(`${err.name} ${err.message}`);

/** The claim was taken over by another instance (this one's lease had lapsed). */
class ClaimLost extends Error {
  override name = "ClaimLost";
}

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
export function kvDedupe(bucket: KvBucket, options: KvDedupeOptions = {}): KvDedupeStore {
  const kv = bucket as unknown as KV;
  const ttlMs = options.ttlMs ?? 120_000;
  const leaseMs = options.leaseMs ?? 30_000;
  if (!Number.isFinite(ttlMs) || ttlMs <= 0)
    throw new RangeError(`ttlMs must be a number > 0, got ${options.ttlMs}`);
  if (!Number.isFinite(leaseMs) || leaseMs < 30)
    throw new RangeError(`leaseMs must be a number >= 30, got ${options.leaseMs}`);
  const renewals = new Set<NodeJS.Timeout>();
  /** How long an owner keeps trying to record its finished call while the bucket is unavailable. */
  const recordForMs = Math.max(2 * leaseMs, 60_000);
  /**
   * When this instance last saw the bucket fail (a timeout, no leader). An owner cannot renew its
   * lease while the bucket is down, so a lease that lapsed during an outage says nothing about its
   * owner: a claim is taken over only once the bucket has worked for a renewal interval since.
   */
  let troubleAt = 0;
  const trouble = () => {
    troubleAt = Date.now();
  };
  /** When a claim whose lease ends at `lease` may be taken over. */
  const takeoverAt = (lease: number) => Math.max(lease, troubleAt + leaseMs / 3);
  /**
   * Claims of one id in flight in this instance, chained: two deliveries of one command taking over
   * a lapsed claim at the same moment would send two compare-and-set writes with the same expected
   * revision, and a clustered nats-server before 2.9.21 can accept both (nats-server#4320).
   */
  const claiming = new Map<string, Promise<unknown>>();
  /**
   * A lapsed claim this instance has seen, by key: the revision, and since when. A claim is taken over
   * only once this instance has itself watched the same revision sit, lapsed, for a renewal interval
   * while the bucket worked: after an outage, the owner gets that long to renew or record.
   */
  const observed = new Map<string, { revision: number; since: number }>();
  /** Tokens of this instance's own writes whose outcome is unknown (the answer and the read-back failed). */
  const uncertain = new Map<string, string>();
  let closed = false;

  const running = (f: string, o: string): Stored => ({
    s: "running",
    f,
    o,
    lease: Date.now() + leaseMs,
  });

  /**
   * The claim this instance holds on `key` at `revision`, marked with its own token `o`. Every write
   * is a compare-and-set on the last revision it knows; when one fails, it reads the key: its own
   * token there means an earlier write landed but its answer was lost (a leader change), so it goes
   * on from that revision; another token means the claim was taken over.
   */
  const owner = (key: string, f: string, o: string, revision: number, deadline = 0): Claim => {
    let rev = revision;
    let writes: Promise<unknown> = Promise.resolve();
    /** Set once the finished call's record landed: no renewal may turn it back into "running". */
    let final = false;
    /** Writes `next` over this claim, one write at a time. Throws ClaimLost, or a bucket error. */
    const write = (next: Stored): Promise<void> => {
      const done = writes.then(async () => {
        if (final && next.s === "running") return;
        try {
          rev = await kv.update(key, encode(next), rev);
          if (next.s !== "running") final = true;
          return;
        } catch (err) {
          const entry = await kv.get(key);
          const now = entry?.operation === "PUT" ? decode(entry.value) : undefined;
          if (entry === null || now?.o !== o) {
            throw new ClaimLost(`kvDedupe: the claim on ${key} was taken over`, { cause: err });
          }
          rev = entry.revision;
          if (now.s !== "running") {
            // Our finished record landed (its answer was lost): never write over it.
            final = true;
            if (next.s === "running" || now.s === next.s) return;
          }
          rev = await kv.update(key, encode(next), rev);
          if (next.s !== "running") final = true;
        }
      });
      writes = done.catch(() => undefined);
      return done;
    };
    let renewing = false;
    const timer = setInterval(() => {
      if (renewing) return;
      renewing = true;
      write(running(f, o)).then(
        () => {
          renewing = false;
        },
        (err: unknown) => {
          renewing = false;
          // A bucket that is briefly unavailable (a leader election): try again next time.
          if (!(err instanceof ClaimLost)) {
            if (unavailable(err)) trouble();
            return;
          }
          clearInterval(timer);
          renewals.delete(timer);
        },
      );
    }, leaseMs / 3);
    timer.unref();
    renewals.add(timer);
    /** Writes `next`, retrying a bucket that is unavailable for up to `recordForMs`. */
    const record = async (next: Stored) => {
      const until = Date.now() + recordForMs;
      for (let tries = 0; ; tries++) {
        try {
          await write(next);
          return;
        } catch (err) {
          if (err instanceof ClaimLost || closed || Date.now() + 100 > until) throw err;
          if (permissionError(err)) throw err;
          trouble();
          await sleep(Math.min(50 * 2 ** tries, 1000));
        }
      }
    };
    return {
      status: "owner",
      finish: async (reply, keep) => {
        try {
          if (keep) {
            // Replayed for ttlMs, and never less than until the caller's deadline (plus a margin).
            const expires = Math.max(Date.now() + ttlMs, deadline + 1000);
            await record({ s: "done", f, o, ...fromReply(reply), expires });
            return;
          }
          // Not kept: show the reply to instances waiting now, then free the id so a retry runs again.
          await record({ s: "failed", f, o, ...fromReply(reply) });
          // A failed record left behind is claimable too: its deletion is only tidying up.
          await kv.delete(key, { previousSeq: rev }).catch(() => undefined);
        } finally {
          clearInterval(timer);
          renewals.delete(timer);
        }
      },
    };
  };

  /**
   * Waits for the running claim on `key` to finish (its reply), vanish, or come up for takeover at
   * `wakeAt` (`undefined`: claim again). Throws when the bucket refuses this instance a watch.
   */
  const waitFor = async (
    key: string,
    wakeAt: number,
    signal: AbortSignal,
  ): Promise<StoredReply | undefined> => {
    if (signal.aborted) return undefined;
    let updates: Awaited<ReturnType<KV["watch"]>>;
    try {
      updates = await kv.watch({ key });
    } catch (err) {
      if (permissionError(err)) throw err;
      // The bucket is unavailable (a leader election?): pause, then let the caller claim again.
      if (unavailable(err)) trouble();
      await sleep(250);
      return undefined;
    }
    if (signal.aborted) {
      // It aborted while the watch was being set up: the listener below would never hear it.
      updates.stop();
      return undefined;
    }
    let lapse: NodeJS.Timeout | undefined;
    const stop = () => updates.stop();
    const arm = (until: number) => {
      clearTimeout(lapse);
      // Jittered, so instances waiting on one dead owner do not all take over at the same instant.
      lapse = setTimeout(stop, Math.max(0, until - Date.now()) + 10 + Math.random() * 100);
    };
    arm(wakeAt);
    signal.addEventListener("abort", stop, { once: true });
    try {
      for await (const entry of updates) {
        if (entry.operation !== "PUT") return undefined;
        const r = decode(entry.value);
        if (r === undefined) return undefined;
        if (r.s === "running") arm(takeoverAt(r.lease));
        else return toReply(r);
      }
      return undefined;
    } catch (err) {
      if (permissionError(err)) throw err;
      if (unavailable(err)) trouble();
      await sleep(250);
      return undefined;
    } finally {
      clearTimeout(lapse);
      signal.removeEventListener("abort", stop);
      updates.stop();
    }
  };

  return {
    close() {
      closed = true;
      for (const t of renewals) clearInterval(t);
      renewals.clear();
      observed.clear();
    },
    async claim(id, fingerprint, deadline) {
      if (closed) throw new Error("kvDedupe: this store was closed; create a new one");
      const key = kvKey(id);
      const before = claiming.get(key);
      const mine = (before ?? Promise.resolve())
        .catch(() => undefined)
        .then(() => claimOnce(key, id, fingerprint, deadline));
      claiming.set(key, mine);
      try {
        return await mine;
      } finally {
        if (claiming.get(key) === mine) claiming.delete(key);
      }
    },
  };

  /** One claim of `key`: create it, or read it and take it over, join it, or replay it. */
  async function claimOnce(
    key: string,
    id: string,
    fingerprint: string,
    deadline: number | undefined,
  ): Promise<Claim> {
    const o = nanoid();
    const mine = (revision: number, token = o) => {
      uncertain.delete(key);
      observed.delete(key);
      return owner(key, fingerprint, token, revision, deadline);
    };
    for (let tries = 0; tries < 10; tries++) {
      try {
        return mine(await kv.create(key, encode(running(fingerprint, o))));
      } catch (err) {
        if (permissionError(err)) throw err;
        // The key exists (or the create landed but its answer was lost): read what is there.
      }
      let entry: Awaited<ReturnType<KV["get"]>>;
      try {
        entry = await kv.get(key);
      } catch (err) {
        if (unavailable(err)) trouble();
        // Our create (or takeover) may have landed: remember its token, so a later claim knows it.
        uncertain.set(key, o);
        throw err;
      }
      if (entry === null || entry.operation !== "PUT") continue; // deleted since: create again
      const r = decode(entry.value);
      if (r?.o === o) return mine(entry.revision); // our own create, or takeover, landed
      if (r?.s === "running" && r.f === fingerprint && r.o === uncertain.get(key)) {
        return mine(entry.revision, r.o); // an earlier claim of ours whose outcome we did not know
      }
      const now = Date.now();
      const lapsed =
        r === undefined ||
        (r.s === "done" && r.expires <= now) ||
        (r.s === "running" && takeoverAt(r.lease) <= now);
      if (r !== undefined && r.s === "running" && lapsed) {
        // Lapsed by its timestamp; take it over only once this instance has seen it sit so.
        const seen = observed.get(key);
        const wakeAt = watchedLapse(key, entry.revision, seen, now);
        if (wakeAt > now) {
          if (r.f !== fingerprint) return { status: "conflict" };
          return { status: "running", wait: (signal) => waitFor(key, wakeAt, signal) };
        }
      }
      if (lapsed || r.s === "failed") {
        // Expired, abandoned by a dead owner, or a failure that is not kept: take the claim.
        try {
          return mine(await kv.update(key, encode(running(fingerprint, o)), entry.revision));
        } catch {
          continue; // another instance was faster (or the answer was lost: the next read tells)
        }
      }
      if (r.f !== fingerprint) return { status: "conflict" };
      if (r.s === "done") return { status: "done", reply: toReply(r) };
      const wakeAt = takeoverAt(r.lease);
      return { status: "running", wait: (signal) => waitFor(key, wakeAt, signal) };
    }
    throw new Error(
      `kvDedupe: could not claim call id ${id} after 10 tries; is the KV bucket healthy?`,
    );
  }

  /**
   * When the lapsed claim at `revision` on `key` may be taken over: once this instance has watched it
   * unchanged for a renewal interval, counted from when it first saw it (or from the bucket's last
   * failure here, if later). Records the first sighting.
   */
  function watchedLapse(
    key: string,
    revision: number,
    seen: { revision: number; since: number } | undefined,
    now: number,
  ): number {
    if (seen?.revision !== revision) {
      if (observed.size >= 10_000) {
        for (const [k, v] of observed) if (now - v.since > 2 * leaseMs) observed.delete(k);
      }
      observed.set(key, { revision, since: now });
      return now + leaseMs / 3;
    }
    return Math.max(seen.since, troubleAt) + leaseMs / 3;
  }
}
