/**
 * An open-addressing hash table from a call id's hash to where its reply is stored, held in three
 * typed arrays: the garbage collector sees three objects, however many replies are indexed.
 *
 * @module
 */

const EMPTY = -1;

/** FNV-1a over the UTF-16 code units of `s`, as a signed 32-bit integer. */
export function hashId(s: string): number {
  let h = 0x811c9dc5 | 0;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h;
}

/**
 * Locations (a segment number and an offset in it) by id hash, with linear probing. Hashes collide;
 * the caller checks the id stored at a location and asks for the next candidate when it differs.
 */
export class ReplyIndex {
  #hash: Int32Array;
  #seg: Int32Array;
  #off: Int32Array;
  #mask: number;
  /** Entries held. */
  count = 0;

  constructor(capacity = 1024) {
    this.#hash = new Int32Array(capacity);
    this.#seg = new Int32Array(capacity).fill(EMPTY);
    this.#off = new Int32Array(capacity);
    this.#mask = capacity - 1;
  }

  /** The first slot to look at for `hash`; pass it to {@link next} to walk the candidates. */
  start(hash: number): number {
    return hash & this.#mask;
  }

  /**
   * The first slot at or after `slot` whose hash is `hash`, or -1 once an empty slot ends the run.
   */
  next(slot: number, hash: number): number {
    const mask = this.#mask;
    for (let i = slot; ; i = (i + 1) & mask) {
      if (this.#seg[i] === EMPTY) return -1;
      if (this.#hash[i] === hash) return i;
    }
  }

  /** The slot after `slot`, to continue a walk. */
  after(slot: number): number {
    return (slot + 1) & this.#mask;
  }

  segmentAt(slot: number): number {
    return this.#seg[slot] as number;
  }

  offsetAt(slot: number): number {
    return this.#off[slot] as number;
  }

  /** Adds a location for `hash`. Callers remove the id's previous location first. */
  insert(hash: number, seg: number, off: number): void {
    if ((this.count + 1) * 2 > this.#seg.length) this.#grow();
    const mask = this.#mask;
    let i = hash & mask;
    while (this.#seg[i] !== EMPTY) i = (i + 1) & mask;
    this.#hash[i] = hash;
    this.#seg[i] = seg;
    this.#off[i] = off;
    this.count++;
  }

  /** The slot holding exactly this location for `hash`, or -1. */
  find(hash: number, seg: number, off: number): number {
    for (let i = this.next(this.start(hash), hash); i !== -1; i = this.next(this.after(i), hash)) {
      if (this.#seg[i] === seg && this.#off[i] === off) return i;
    }
    return -1;
  }

  /** Empties `slot`, shifting later entries of its run back so that lookups need no tombstones. */
  remove(slot: number): void {
    const mask = this.#mask;
    let hole = slot;
    for (let j = (slot + 1) & mask; this.#seg[j] !== EMPTY; j = (j + 1) & mask) {
      const home = (this.#hash[j] as number) & mask;
      // Move j into the hole unless its home lies cyclically in (hole, j].
      const stays = hole <= j ? home > hole && home <= j : home > hole || home <= j;
      if (stays) continue;
      this.#hash[hole] = this.#hash[j] as number;
      this.#seg[hole] = this.#seg[j] as number;
      this.#off[hole] = this.#off[j] as number;
      hole = j;
    }
    this.#seg[hole] = EMPTY;
    this.count--;
  }

  #grow(): void {
    const hash = this.#hash;
    const seg = this.#seg;
    const off = this.#off;
    const capacity = seg.length * 2;
    this.#hash = new Int32Array(capacity);
    this.#seg = new Int32Array(capacity).fill(EMPTY);
    this.#off = new Int32Array(capacity);
    this.#mask = capacity - 1;
    this.count = 0;
    for (let i = 0; i < seg.length; i++) {
      if (seg[i] !== EMPTY) this.insert(hash[i] as number, seg[i] as number, off[i] as number);
    }
  }
}
