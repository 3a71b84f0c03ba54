/**
 * Finished calls' replies for {@link memoryDedupe}, kept as the encoded bytes that went on the wire in
 * a few large buffers ("segments") with a typed-array index, so that holding a million replies costs
 * the garbage collector a handful of objects, not a million.
 *
 * Each reply is protected until its caller's deadline plus a margin: it is never evicted before.
 * Segments are grouped by that protection time (in {@link BUCKET_MS} steps), so a whole segment
 * becomes evictable at once. After it, a reply stays replayable until its expiry (the replay window)
 * unless its space is needed, oldest protection first.
 *
 * @module
 */

import { hashId, ReplyIndex } from "./reply-index.js";
import type { StoredReply } from "./types.js";

/** Protection times are rounded up to this step: the granularity at which space is freed. */
export const BUCKET_MS = 250;

// Record layout, from an 8-byte aligned offset:
// size u32 | idHash i32 | protectUntil f64 | expiresAt f64 | idLen u32 | fpLen u32 | hdrLen u32 |
// dataLen u32 | id (u16 × idLen) | fingerprint (u16 × fpLen) | headers JSON (hdrLen) | data (dataLen)
const HEADER = 40;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

interface Segment {
  readonly id: number;
  readonly u8: Uint8Array;
  readonly u16: Uint16Array;
  readonly view: DataView;
  used: number;
  /** The protection bucket: no record in it is protected after this time. */
  readonly bucket: number;
  /** The latest expiry of a record in it. */
  maxExpires: number;
}

interface Bucket {
  readonly key: number;
  readonly segments: Segment[];
}

/** Where a reply is: the segment number and the offset, packed (`seg * 2^32 + off`). */
export type Location = number;
const pack = (seg: number, off: number): Location => seg * 0x1_0000_0000 + off;

/** The replies of finished calls, in at most `maxBytes` of segments (see the module comment). */
export class ReplyLog {
  readonly #index = new ReplyIndex();
  readonly #segments: Array<Segment | undefined> = [];
  readonly #freeIds: number[] = [];
  /** Buckets by ascending key. */
  readonly #buckets: Bucket[] = [];
  readonly #segmentBytes: number;
  /** Bytes of all segments. */
  allocated = 0;

  constructor(readonly maxBytes: number) {
    // About 32 segments in the budget, between 4 KiB and 1 MiB each.
    let size = 4096;
    while (size < 1 << 20 && size * 64 <= maxBytes) size *= 2;
    this.#segmentBytes = size;
  }

  /** Replies indexed now (some may have expired and not yet been dropped). */
  get count(): number {
    return this.#index.count;
  }

  /** The reply stored for `id` and not expired at `now`, or -1. */
  find(id: string, now: number): Location {
    const index = this.#index;
    const hash = hashId(id);
    for (
      let i = index.next(index.start(hash), hash);
      i !== -1;
      i = index.next(index.after(i), hash)
    ) {
      const seg = this.#segments[index.segmentAt(i)] as Segment;
      const off = index.offsetAt(i);
      if (!sameString(seg, off + HEADER, id)) continue;
      if (seg.view.getFloat64(off + 16, true) >= now) return pack(seg.id, off);
      index.remove(i); // expired: forget it, so the id can run again
      return -1;
    }
    return -1;
  }

  /** Whether the reply at `at` was stored for the fingerprint `fp`. */
  fingerprintIs(at: Location, fp: string): boolean {
    const [seg, off] = this.#at(at);
    const idLen = seg.view.getUint32(off + 24, true);
    return sameString(seg, off + HEADER + 2 * idLen, fp, off + 28);
  }

  /** A copy of the reply at `at`. */
  reply(at: Location): StoredReply {
    const [seg, off] = this.#at(at);
    const v = seg.view;
    const idLen = v.getUint32(off + 24, true);
    const fpLen = v.getUint32(off + 28, true);
    const hdrLen = v.getUint32(off + 32, true);
    const dataLen = v.getUint32(off + 36, true);
    const h = off + HEADER + 2 * (idLen + fpLen);
    const data = seg.u8.slice(h + hdrLen, h + hdrLen + dataLen);
    if (hdrLen === 0) return { data };
    const headers = JSON.parse(decoder.decode(seg.u8.subarray(h, h + hdrLen))) as Record<
      string,
      string
    >;
    return { data, headers };
  }

  /**
   * Stores `reply` for `id`. Always succeeds: a reply inside its caller's deadline must be kept, so
   * when nothing can be evicted the log goes over `maxBytes` (the caller's admission keeps that rare).
   */
  append(
    id: string,
    fp: string,
    reply: StoredReply,
    protectUntil: number,
    expiresAt: number,
    now: number,
  ): void {
    const hdr =
      reply.headers === undefined ? undefined : encoder.encode(JSON.stringify(reply.headers));
    const hdrLen = hdr === undefined ? 0 : hdr.length;
    const size = align8(HEADER + 2 * (id.length + fp.length) + hdrLen + reply.data.length);
    const key = Math.ceil(protectUntil / BUCKET_MS) * BUCKET_MS;
    let seg = this.#bucket(key).segments.at(-1);
    if (seg === undefined || seg.u8.length - seg.used < size)
      seg = this.#newSegment(key, size, now);
    const off = seg.used;
    const v = seg.view;
    const hash = hashId(id);
    v.setUint32(off, size, true);
    v.setInt32(off + 4, hash, true);
    v.setFloat64(off + 8, protectUntil, true);
    v.setFloat64(off + 16, expiresAt, true);
    v.setUint32(off + 24, id.length, true);
    v.setUint32(off + 28, fp.length, true);
    v.setUint32(off + 32, hdrLen, true);
    v.setUint32(off + 36, reply.data.length, true);
    let p = (off + HEADER) >> 1;
    const u16 = seg.u16;
    for (let i = 0; i < id.length; i++) u16[p++] = id.charCodeAt(i);
    for (let i = 0; i < fp.length; i++) u16[p++] = fp.charCodeAt(i);
    let b = p << 1;
    if (hdr !== undefined) {
      seg.u8.set(hdr, b);
      b += hdrLen;
    }
    seg.u8.set(reply.data, b);
    seg.used += size;
    if (expiresAt > seg.maxExpires) seg.maxExpires = expiresAt;
    this.#index.insert(hash, seg.id, off);
  }

  /**
   * Frees segments until `bytes` more fit in the budget: expired ones, then those past their
   * protection, oldest first. Returns whether they fit.
   */
  makeRoom(bytes: number, now: number): boolean {
    const buckets = this.#buckets;
    while (this.allocated + bytes > this.maxBytes) {
      const head = buckets[0];
      if (head === undefined || head.key >= now) return false;
      const seg = head.segments.shift();
      if (seg !== undefined) this.#free(seg);
      if (head.segments.length === 0) buckets.shift();
    }
    return true;
  }

  /** Frees the segments whose replies have all expired. Cheap: looks at the oldest buckets only. */
  dropExpired(now: number): void {
    const buckets = this.#buckets;
    for (let head = buckets[0]; head !== undefined && head.key < now; head = buckets[0]) {
      const segs = head.segments;
      while (segs.length > 0 && (segs[0] as Segment).maxExpires < now)
        this.#free(segs.shift() as Segment);
      if (segs.length > 0) return;
      buckets.shift();
    }
  }

  /** The time at which the oldest protected segment may be evicted, or `now` if one already can. */
  nextEvictable(now: number): number {
    const head = this.#buckets[0];
    return head === undefined ? now : Math.max(now, head.key + 1);
  }

  #at(at: Location): [Segment, number] {
    const segId = Math.floor(at / 0x1_0000_0000);
    return [this.#segments[segId] as Segment, at - segId * 0x1_0000_0000];
  }

  #bucket(key: number): Bucket {
    const buckets = this.#buckets;
    let i = buckets.length;
    // Most replies land in one of the newest buckets: search from the end.
    while (i > 0 && (buckets[i - 1] as Bucket).key > key) i--;
    const found = buckets[i - 1];
    if (found !== undefined && found.key === key) return found;
    const bucket: Bucket = { key, segments: [] };
    buckets.splice(i, 0, bucket);
    return bucket;
  }

  #newSegment(key: number, size: number, now: number): Segment {
    let bytes = Math.max(size, this.#segmentBytes);
    if (!this.makeRoom(bytes, now)) {
      // Near the budget: a smaller segment, down to this one reply (which must be kept regardless).
      this.makeRoom(size, now);
      bytes = Math.max(size, Math.min(bytes, this.maxBytes - this.allocated) & ~7);
    }
    // Looked up again: making room may have freed the bucket itself.
    const bucket = this.#bucket(key);
    const buffer = new ArrayBuffer(bytes);
    const id = this.#freeIds.pop() ?? this.#segments.length;
    const seg: Segment = {
      id,
      u8: new Uint8Array(buffer),
      u16: new Uint16Array(buffer),
      view: new DataView(buffer),
      used: 0,
      bucket: bucket.key,
      maxExpires: 0,
    };
    this.#segments[id] = seg;
    this.allocated += bytes;
    bucket.segments.push(seg);
    return seg;
  }

  /** Unindexes every reply in `seg` that is still indexed there, and releases its memory. */
  #free(seg: Segment): void {
    const index = this.#index;
    const v = seg.view;
    for (let off = 0; off < seg.used; off += v.getUint32(off, true)) {
      const slot = index.find(v.getInt32(off + 4, true), seg.id, off);
      if (slot !== -1) index.remove(slot);
    }
    this.#segments[seg.id] = undefined;
    this.#freeIds.push(seg.id);
    this.allocated -= seg.u8.length;
  }
}

function align8(n: number): number {
  return (n + 7) & ~7;
}

/**
 * Whether the UTF-16 string stored at byte offset `at` of `seg` equals `s`. Its length is read at
 * `lenAt` (the id's length field, unless given).
 */
function sameString(seg: Segment, at: number, s: string, lenAt = at - HEADER + 24): boolean {
  if (seg.view.getUint32(lenAt, true) !== s.length) return false;
  const u16 = seg.u16;
  const base = at >> 1;
  for (let i = 0; i < s.length; i++) if (u16[base + i] !== s.charCodeAt(i)) return false;
  return true;
}
