/**
 * Finished calls' replies for {@link memoryDedupe}, kept as the encoded bytes that went on the wire in
 * a few large buffers ("segments") with a typed-array index, so that holding a million replies costs
 * the garbage collector a handful of objects, not a million.
 *
 * Each reply is protected until its caller's deadline plus a margin: the call is never forgotten
 * before. Segments are grouped in buckets by that protection time, so a whole segment becomes
 * evictable at once. A bucket spans {@link BUCKET_MS} for protection times in the next few seconds and
 * more for later ones (an eighth of the distance, in powers of two), so that however spread the
 * deadlines, only a few dozen buckets are open; a bucket's first segment is small and each next one
 * twice the size, so a sparse bucket holds little memory. After its protection, a reply stays
 * replayable until its expiry unless its space is needed, oldest protection first.
 *
 * When the budget is full of protected replies, the oldest segments are compacted: each reply in
 * them is replaced by a "dropped" record that keeps only the call id and fingerprint, so a duplicate
 * is still recognised (and not run again) though its reply can no longer be replayed. Only when
 * even those records fill the budget does {@link ReplyLog.makeRoom} fail.
 *
 * @module
 */
import { hashId, ReplyIndex } from "./reply-index.js";
import type { StoredReply } from "./types.js";

/** The finest bucket span, in ms: the granularity at which space is freed. */
export const BUCKET_MS = 250;
/** The smallest segment, in bytes: a bucket's first. */
const MIN_SEGMENT = 4096;

// Record layout, from an 8-byte aligned offset (48 bytes, then the id, headers and data):
//   0 size u32 | 4 idHash i32 | 8 protectUntil f64 | 16 expiresAt f64 | 24 idLen u32 (top bit: the
//   id is stored one byte a character, else UTF-16) | 28 hdrLen u32 | 32 dataLen u32 (DROPPED: the
//   reply was dropped) | 36 unused | 40 fingerprint hash (two i32) | 48 id | headers JSON | data
const HEADER = 48;
const LATIN1 = 0x8000_0000;
/** The data length of a dropped reply's record. */
const DROPPED = 0xffff_ffff;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

interface Segment {
  readonly id: number;
  readonly u8: Uint8Array;
  readonly u16: Uint16Array;
  readonly view: DataView;
  used: number;
  /** Holds only dropped replies' records: compacting it would gain nothing. */
  readonly dropped: boolean;
  /** Its bucket's key: every record in it is protected until then. */
  readonly key: number;
  /** The latest expiry of a record in it. */
  maxExpires: number;
  /** Bytes of its records still indexed. */
  live: number;
  /** Bytes those records would take as dropped replies' records (without their replies). */
  liveHeads: number;
}

interface Bucket {
  /** The end of protection for every record in it. */
  readonly key: number;
  readonly segments: Segment[];
  /** Where new replies go. */
  open: Segment | undefined;
  /** Where records of dropped replies go. */
  dropped: Segment | undefined;
}

/** Where a reply is: the segment number and the offset, packed (`seg * 2^32 + off`). */
export type Location = number;
const SEG = 0x1_0000_0000;

/** The replies of finished calls, in at most `maxBytes` of memory (see the module comment). */
export class ReplyLog {
  readonly #index = new ReplyIndex();
  /** Seeds the hash of call ids, so that ids chosen to collide in one process do not in another. */
  readonly #seed = (Math.random() * 2 ** 32) | 0;
  readonly #segments: Array<Segment | undefined> = [];
  readonly #freeIds: number[] = [];
  /** Buckets by ascending key. */
  readonly #buckets: Bucket[] = [];
  /** The largest segment. */
  readonly #segmentBytes: number;
  /**
   * Buffers of freed segments by size, for reuse: allocating memory outside the heap at the rate
   * replies come would have V8 run full collections to account for it.
   */
  readonly #spare = new Map<number, ArrayBuffer[]>();
  #spareBytes = 0;
  readonly #maxSpareBytes: number;
  /** Bytes of all segments. */
  allocated = 0;
  /** Replies dropped (compacted away) while still protected, since the log was made. */
  droppedReplies = 0;

  /** The budget, in bytes (a multiple of 8: every segment and record is). */
  readonly maxBytes: number;

  constructor(maxBytes: number) {
    this.maxBytes = maxBytes - (maxBytes % 8);
    // About 64 segments in the budget, between 4 KiB and 1 MiB each.
    let size = MIN_SEGMENT;
    while (size < 1 << 20 && size * 64 <= this.maxBytes) size *= 2;
    this.#segmentBytes = size;
    this.#maxSpareBytes = Math.min(16 * 2 ** 20, this.maxBytes / 8);
  }

  /** Calls indexed now (some may have expired and not yet been dropped). */
  get count(): number {
    return this.#index.count;
  }

  /** Memory counted against the budget: the segments and the index. */
  get used(): number {
    return this.allocated + this.#index.bytes;
  }

  /** Memory held: {@link used}, and spare buffers for new segments. */
  get bytes(): number {
    return this.used + this.#spareBytes;
  }

  /** The bytes the index would grow by to hold `more` calls beyond those it holds. */
  indexGrowth(more: number): number {
    return this.#index.growthFor(more);
  }

  /**
   * The hash this log files `id` under. A caller that both looks an id up and stores it passes it to
   * {@link find} and {@link append}, so that the id is hashed once.
   */
  hashOf(id: string): number {
    return hashId(id, this.#seed);
  }

  /** The reply stored for `id` (whose {@link hashOf} is `hash`) and not expired at `now`, or -1. */
  find(id: string, now: number, hash = this.hashOf(id)): Location {
    const index = this.#index;
    for (
      let i = index.next(index.start(hash), hash);
      i !== -1;
      i = index.next(index.after(i), hash)
    ) {
      const seg = this.#segments[index.segmentAt(i)] as Segment;
      const off = index.offsetAt(i);
      if (!sameId(seg, off, id)) continue;
      if (seg.view.getFloat64(off + 16, true) >= now) return seg.id * SEG + off;
      this.#unindex(i, seg, off); // expired: forget it, so the id can run again
      return -1;
    }
    return -1;
  }

  /** Whether the reply at `at` was stored for the fingerprint `fp` (compared by a 64-bit hash). */
  fingerprintIs(at: Location, fp: string): boolean {
    const [seg, off] = this.#at(at);
    const v = seg.view;
    hashFingerprint(fp);
    return v.getInt32(off + 40, true) === FP[0] && v.getInt32(off + 44, true) === FP[1];
  }

  /** A copy of the reply at `at`, or `undefined` when it was dropped to stay within the budget. */
  reply(at: Location): StoredReply | undefined {
    const [seg, off] = this.#at(at);
    const v = seg.view;
    const hdrLen = v.getUint32(off + 28, true);
    const dataLen = v.getUint32(off + 32, true);
    if (dataLen === DROPPED) return undefined;
    const h = off + HEADER + storedIdBytes(v, off);
    const data = seg.u8.slice(h + hdrLen, h + hdrLen + dataLen);
    if (hdrLen === 0) return { data };
    const headers = JSON.parse(decoder.decode(seg.u8.subarray(h, h + hdrLen))) as Record<
      string,
      string
    >;
    return { data, headers };
  }

  /** When the record at `at` stops being protected. */
  protectedUntil(at: Location): number {
    const [seg, off] = this.#at(at);
    return seg.view.getFloat64(off + 8, true);
  }

  /**
   * Protects the call at `at` (for `id` and `fp`) until `protectUntil` at least, and keeps it until
   * `expiresAt` at least: another caller of the same id has a later deadline. Renews it in place if
   * its segment is kept that long anyway, else copies it to the bucket of the new protection time
   * (going over the budget if it must: a call is never forgotten); `at` is no longer valid after.
   */
  renew(
    at: Location,
    id: string,
    fp: string,
    protectUntil: number,
    expiresAt: number,
    now: number,
  ): void {
    const [seg, off] = this.#at(at);
    const v = seg.view;
    const expires = Math.max(expiresAt, v.getFloat64(off + 16, true));
    if (protectUntil <= seg.key) {
      // Its segment is kept that long anyway: renew in place.
      v.setFloat64(off + 8, protectUntil, true);
      v.setFloat64(off + 16, expires, true);
      if (expires > seg.maxExpires) seg.maxExpires = expires;
      return;
    }
    const reply = this.reply(at);
    const hash = v.getInt32(off + 4, true);
    const slot = this.#index.find(hash, seg.id, off);
    if (slot !== -1) this.#unindex(slot, seg, off);
    if (reply === undefined) this.#appendDropped(id, fp, protectUntil, expires, now, hash);
    else this.append(id, fp, reply, protectUntil, expires, now, hash);
  }

  /**
   * Stores `reply` for `id`. Always succeeds: a call inside its caller's deadline must be remembered,
   * so when nothing can be evicted or compacted the log goes over `maxBytes` (the caller's admission
   * keeps that rare). A reply larger than a sixteenth of the budget is stored as dropped. Returns the
   * bytes the record takes. `hash`: the id's {@link hashOf}.
   */
  append(
    id: string,
    fp: string,
    reply: StoredReply,
    protectUntil: number,
    expiresAt: number,
    now: number,
    hash = this.hashOf(id),
  ): number {
    const hdr =
      reply.headers === undefined ? undefined : encoder.encode(JSON.stringify(reply.headers));
    const latin1 = isLatin1(id);
    const size = align8(HEADER + idBytes(id, latin1) + (hdr?.length ?? 0) + reply.data.length);
    if (size > this.maxBytes / 16) {
      this.droppedReplies++;
      return this.#appendDropped(id, fp, protectUntil, expiresAt, now, hash, latin1);
    }
    const key = bucketKey(protectUntil, now);
    let seg = this.#bucket(key).open;
    if (seg === undefined || seg.u8.length - seg.used < size)
      seg = this.#newSegment(key, size, now);
    this.#write(seg, id, hash, latin1, fp, hdr, reply.data, protectUntil, expiresAt);
    return size;
  }

  /** Stores a dropped reply's record for `id`; returns the bytes it takes. */
  #appendDropped(
    id: string,
    fp: string,
    protectUntil: number,
    expiresAt: number,
    now: number,
    hash: number,
    latin1 = isLatin1(id),
  ): number {
    const size = align8(HEADER + idBytes(id, latin1));
    const key = bucketKey(protectUntil, now);
    const open = this.#bucket(key).dropped;
    if (open === undefined || open.u8.length - open.used < size) this.makeRoom(size, now);
    // Looked up again: making room may have freed the bucket.
    const seg = this.#droppedSegment(this.#bucket(key), size, this.maxBytes - this.used);
    this.#write(seg, id, hash, latin1, fp, undefined, undefined, protectUntil, expiresAt);
    return size;
  }

  /**
   * Writes one record at the end of `seg` and indexes it. `data` undefined: a dropped reply. `hash`:
   * the id's {@link hashOf}; `latin1`: whether its characters fit in a byte each.
   */
  #write(
    seg: Segment,
    id: string,
    hash: number,
    latin1: boolean,
    fp: string,
    hdr: Uint8Array | undefined,
    data: Uint8Array | undefined,
    protectUntil: number,
    expiresAt: number,
  ): void {
    const off = seg.used;
    const v = seg.view;
    const hdrLen = hdr?.length ?? 0;
    const idLen = idBytes(id, latin1);
    const size = align8(HEADER + idLen + hdrLen + (data?.length ?? 0));
    v.setUint32(off, size, true);
    v.setInt32(off + 4, hash, true);
    v.setFloat64(off + 8, protectUntil, true);
    v.setFloat64(off + 16, expiresAt, true);
    v.setUint32(off + 24, latin1 ? (id.length | LATIN1) >>> 0 : id.length, true);
    v.setUint32(off + 28, hdrLen, true);
    v.setUint32(off + 32, data === undefined ? DROPPED : data.length, true);
    hashFingerprint(fp);
    v.setInt32(off + 40, FP[0] as number, true);
    v.setInt32(off + 44, FP[1] as number, true);
    let b = off + HEADER;
    if (latin1) {
      const u8 = seg.u8;
      for (let i = 0; i < id.length; i++) u8[b++] = id.charCodeAt(i);
    } else {
      const u16 = seg.u16;
      let p = b >> 1;
      for (let i = 0; i < id.length; i++) u16[p++] = id.charCodeAt(i);
      b += idLen;
    }
    if (hdr !== undefined) {
      seg.u8.set(hdr, b);
      b += hdrLen;
    }
    if (data !== undefined) seg.u8.set(data, b);
    this.#wrote(seg, off, size, align8(HEADER + idLen), hash, expiresAt);
  }

  /**
   * Accounts for a record of `size` bytes (`head` without its reply) just written at `off` of `seg`,
   * and indexes it.
   */
  #wrote(
    seg: Segment,
    off: number,
    size: number,
    head: number,
    hash: number,
    expiresAt: number,
  ): void {
    seg.used += size;
    seg.live += size;
    seg.liveHeads += head;
    if (expiresAt > seg.maxExpires) seg.maxExpires = expiresAt;
    this.#index.insert(hash, seg.id, off);
    // The index may have grown into memory that spare buffers held.
    if (this.#spareBytes > 0 && this.bytes > this.maxBytes) this.#trimSpare(0);
  }

  /** Removes the index entry at `slot`, for the record at `off` of `seg`, which stays as dead bytes. */
  #unindex(slot: number, seg: Segment, off: number): void {
    this.#index.remove(slot);
    seg.live -= seg.view.getUint32(off, true);
    seg.liveHeads -= align8(HEADER + storedIdBytes(seg.view, off));
  }

  /**
   * Frees memory until `bytes` more fit in the budget: spare buffers, then segments past their
   * protection, oldest first; then compacts the oldest protected ones, dropping their replies but
   * keeping their calls. Returns whether `bytes` fit.
   */
  makeRoom(bytes: number, now: number): boolean {
    const buckets = this.#buckets;
    this.#trimSpare(bytes);
    while (this.used + bytes > this.maxBytes) {
      const head = buckets[0];
      if (head !== undefined && head.key < now) {
        const seg = head.segments[0];
        if (seg !== undefined) this.#free(head, seg);
        else buckets.shift();
      } else if (!this.#compactOldest()) return false;
    }
    return true;
  }

  /**
   * Replaces the oldest segment of replies with records of the same calls without their replies.
   * Returns `false` when no segment would shrink.
   */
  #compactOldest(): boolean {
    for (const bucket of this.#buckets) {
      for (const seg of bucket.segments) {
        // The segment dropped records are being copied into stays.
        if (seg === bucket.dropped) continue;
        // The room the calls still indexed here need without their replies.
        const needed = seg.liveHeads;
        // Worth it only if the records take less than the segment gives back: a segment of replies
        // gives back their bytes (the first compaction of a bucket may make a segment for the
        // records as large as the one it frees; later ones fill it). One of dropped records gives
        // back only what calls renewed or expired left dead: compacted once half of it is, so that
        // the copying is paid for by the room it makes, and a store refusing calls does not copy
        // the same records again for each refusal.
        if (seg.dropped ? needed > seg.used / 2 : needed >= seg.u8.length) continue;
        if (needed === 0) {
          this.#free(bucket, seg);
          return true;
        }
        const target = this.#droppedSegment(bucket, needed, seg.u8.length);
        const index = this.#index;
        const v = seg.view;
        for (let off = 0; off < seg.used; off += v.getUint32(off, true)) {
          // Looked up one at a time: removing and inserting moves other entries of the index.
          const slot = index.find(v.getInt32(off + 4, true), seg.id, off);
          if (slot === -1) continue;
          index.remove(slot);
          if (v.getUint32(off + 32, true) !== DROPPED) this.droppedReplies++;
          // The record's head and id, without its reply.
          const size = align8(HEADER + storedIdBytes(v, off));
          const at = target.used;
          target.u8.set(seg.u8.subarray(off, off + HEADER + storedIdBytes(v, off)), at);
          target.view.setUint32(at, size, true);
          target.view.setUint32(at + 28, 0, true);
          target.view.setUint32(at + 32, DROPPED, true);
          const hash = v.getInt32(off + 4, true);
          this.#wrote(target, at, size, size, hash, v.getFloat64(off + 16, true));
        }
        this.#free(bucket, seg);
        return true;
      }
    }
    return false;
  }

  /**
   * A segment of `bucket` for dropped replies with room for `size` bytes, no larger than `cap`
   * (unless `size` is) when a new one is needed.
   */
  #droppedSegment(bucket: Bucket, size: number, cap = Number.POSITIVE_INFINITY): Segment {
    const open = bucket.dropped;
    if (open !== undefined && open.u8.length - open.used >= size) return open;
    const bytes = align8(Math.max(size, Math.min(this.#nextSize(open, size), cap)));
    const seg = this.#allocate(bucket, bytes, true);
    bucket.dropped = seg;
    return seg;
  }

  /** Frees the segments whose replies have all expired. Cheap: looks at the oldest buckets only. */
  dropExpired(now: number): void {
    const buckets = this.#buckets;
    for (let head = buckets[0]; head !== undefined && head.key < now; head = buckets[0]) {
      const segs = head.segments;
      while (segs.length > 0 && (segs[0] as Segment).maxExpires < now)
        this.#free(head, segs[0] as Segment);
      if (segs.length > 0) return;
      if (buckets[0] === head) buckets.shift();
    }
    // Nothing left to keep: an idle store gives its spare buffers back too.
    if (buckets.length === 0 && this.#spareBytes > 0) {
      this.#spare.clear();
      this.#spareBytes = 0;
    }
  }

  /** The time at which the oldest protected segment may be evicted, or `now` if one already can. */
  nextEvictable(now: number): number {
    const head = this.#buckets[0];
    return head === undefined ? now : Math.max(now, head.key + 1);
  }

  #at(at: Location): [Segment, number] {
    const segId = Math.floor(at / SEG);
    return [this.#segments[segId] as Segment, at - segId * SEG];
  }

  #bucket(key: number): Bucket {
    const buckets = this.#buckets;
    let i = buckets.length;
    // Most replies land in one of the newest buckets: search from the end.
    while (i > 0 && (buckets[i - 1] as Bucket).key > key) i--;
    const found = buckets[i - 1];
    if (found !== undefined && found.key === key) return found;
    const bucket: Bucket = { key, segments: [], open: undefined, dropped: undefined };
    buckets.splice(i, 0, bucket);
    return bucket;
  }

  /** The size of a bucket's next segment after `last`: twice it, up to the largest, and >= `size`. */
  #nextSize(last: Segment | undefined, size: number): number {
    const doubled =
      last === undefined ? MIN_SEGMENT : Math.min(2 * last.u8.length, this.#segmentBytes);
    return Math.max(size, doubled);
  }

  #newSegment(key: number, size: number, now: number): Segment {
    let bytes = this.#nextSize(this.#bucket(key).open, size);
    if (!this.makeRoom(bytes, now)) {
      // Near the budget: a smaller segment, down to this one reply (which must be kept regardless).
      this.makeRoom(size, now);
      bytes = Math.max(size, Math.min(bytes, this.maxBytes - this.used) & ~7);
    }
    // Looked up again: making room may have freed the bucket itself.
    const bucket = this.#bucket(key);
    bucket.open = this.#allocate(bucket, bytes, false);
    return bucket.open;
  }

  #allocate(bucket: Bucket, bytes: number, dropped: boolean): Segment {
    let buffer = this.#spare.get(bytes)?.pop();
    if (buffer !== undefined) this.#spareBytes -= bytes;
    else {
      this.#trimSpare(bytes);
      buffer = new ArrayBuffer(bytes);
    }
    const u8 = new Uint8Array(buffer);
    const u16 = new Uint16Array(buffer);
    const view = new DataView(buffer);
    const id = this.#freeIds.pop() ?? this.#segments.length;
    const seg: Segment = {
      id,
      u8,
      u16,
      view,
      used: 0,
      dropped,
      key: bucket.key,
      maxExpires: 0,
      live: 0,
      liveHeads: 0,
    };
    this.#segments[id] = seg;
    this.allocated += bytes;
    bucket.segments.push(seg);
    return seg;
  }

  /** Releases spare buffers until `bytes` more fit in the budget beside them. */
  #trimSpare(bytes: number): void {
    for (const [size, buffers] of this.#spare) {
      while (buffers.length > 0 && this.bytes + bytes > this.maxBytes) {
        buffers.pop();
        this.#spareBytes -= size;
      }
    }
  }

  /**
   * Takes `seg` out of `bucket` (and the bucket out of the log once empty), unindexes every record
   * still indexed there, and keeps its buffer for reuse or lets it go.
   */
  #free(bucket: Bucket, seg: Segment): void {
    bucket.segments.splice(bucket.segments.indexOf(seg), 1);
    if (bucket.dropped === seg) bucket.dropped = undefined;
    if (bucket.open === seg) bucket.open = undefined;
    if (bucket.segments.length === 0) this.#buckets.splice(this.#buckets.indexOf(bucket), 1);
    const index = this.#index;
    const v = seg.view;
    for (let off = 0; off < seg.used; off += v.getUint32(off, true)) {
      const slot = index.find(v.getInt32(off + 4, true), seg.id, off);
      if (slot !== -1) index.remove(slot);
    }
    this.#segments[seg.id] = undefined;
    this.#freeIds.push(seg.id);
    const size = seg.u8.length;
    this.allocated -= size;
    if (this.#spareBytes + size <= this.#maxSpareBytes && this.bytes + size <= this.maxBytes) {
      seg.u8.fill(0, 0, seg.used);
      const list = this.#spare.get(size);
      if (list === undefined) this.#spare.set(size, [seg.u8.buffer as ArrayBuffer]);
      else list.push(seg.u8.buffer as ArrayBuffer);
      this.#spareBytes += size;
    }
  }
}

/**
 * The bucket of a protection time: rounded up to {@link BUCKET_MS} for the next 2 s, and to a
 * power-of-two multiple of it, about an eighth of the distance from `now`, for later ones.
 */
function bucketKey(protectUntil: number, now: number): number {
  let step = BUCKET_MS;
  const far = (protectUntil - now) / 8;
  while (step < far) step *= 2;
  return Math.ceil(protectUntil / step) * step;
}

/** The 64-bit hash of the last fingerprint {@link hashFingerprint} hashed, as two int32s. */
const FP = new Int32Array(2);

/**
 * Hashes the fingerprint `s` into {@link FP}: FNV-1a ({@link hashId} unseeded) and a second,
 * independent hash, in one pass over the string.
 */
function hashFingerprint(s: string): void {
  let a = 0x811c9dc5 | 0;
  let b = 0x5bd1e995 | 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x2c1b3c6d);
    b ^= b >>> 15;
  }
  FP[0] = a;
  FP[1] = b;
}

/** Whether every character of `s` fits in one byte. */
function isLatin1(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0xff) return false;
  return true;
}

/** The bytes `id` takes in a record: one a character when it is Latin-1 (`latin1`), else two. */
function idBytes(id: string, latin1: boolean): number {
  return latin1 ? id.length : 2 * id.length;
}

function align8(n: number): number {
  return (n + 7) & ~7;
}

/** The bytes of the id stored in the record at `off`. */
function storedIdBytes(v: DataView, off: number): number {
  const n = v.getUint32(off + 24, true);
  return n & LATIN1 ? n & ~LATIN1 : 2 * n;
}

/** Whether the record at `off` of `seg` is for the call id `id`. */
function sameId(seg: Segment, off: number, id: string): boolean {
  const n = seg.view.getUint32(off + 24, true);
  const latin1 = (n & LATIN1) !== 0;
  if ((latin1 ? n & ~LATIN1 : n) !== id.length) return false;
  const at = off + HEADER;
  if (latin1) {
    const u8 = seg.u8;
    for (let i = 0; i < id.length; i++) if (u8[at + i] !== id.charCodeAt(i)) return false;
  } else {
    const u16 = seg.u16;
    const base = at >> 1;
    for (let i = 0; i < id.length; i++) if (u16[base + i] !== id.charCodeAt(i)) return false;
  }
  return true;
}
