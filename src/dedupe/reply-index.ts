/**
 * An open-addressing hash table from a call id's hash to where its reply is stored, held in one typed
 * array: the garbage collector sees one object however many replies are indexed, and a lookup reads
 * one cache line per slot.
 *
 * @module
 */

const EMPTY = -1;
/** Int32s a slot: the hash, the segment number (EMPTY when free), the offset, and one unused. */
const STRIDE = 4;

/**
 * FNV-1a over the UTF-16 code units of `s`, as a signed 32-bit integer, from `seed` (a store's own
 * random one for call ids, which callers choose: ids made to collide would otherwise turn lookups
 * into scans).
 */
export function hashId(s: string, seed = 0x811c9dc5): number {
  let h = seed | 0;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h;
}

/**
 * Locations (a segment number and an offset in it) by id hash, with linear probing. Hashes collide;
 * the caller checks the id stored at a location and asks for the next candidate when it differs.
 */
export class ReplyIndex {
  #slots: Int32Array;
  #mask: number;
  /** Entries held. */
  count = 0;

  constructor(capacity = 64) {
    this.#slots = ReplyIndex.#empty(capacity);
    this.#mask = capacity - 1;
  }

  static #empty(capacity: number): Int32Array {
    const slots = new Int32Array(capacity * STRIDE);
    for (let i = 1; i < slots.length; i += STRIDE) slots[i] = EMPTY;
    return slots;
  }

  /** The memory the index takes, in bytes. */
  get bytes(): number {
    return this.#slots.byteLength;
  }

  /** The bytes the index would grow by to hold `more` entries beyond those it holds. */
  growthFor(more: number): number {
    let capacity = this.#mask + 1;
    while ((this.count + more) * 2 > capacity) capacity *= 2;
    return (capacity - (this.#mask + 1)) * STRIDE * 4;
  }

  /** The first slot to look at for `hash`; pass it to {@link next} to walk the candidates. */
  start(hash: number): number {
    return hash & this.#mask;
  }

  /**
   * The first slot at or after `slot` whose hash is `hash`, or -1 once an empty slot ends the run.
   */
  next(slot: number, hash: number): number {
    const slots = this.#slots;
    const mask = this.#mask;
    for (let i = slot; ; i = (i + 1) & mask) {
      const at = i * STRIDE;
      if (slots[at + 1] === EMPTY) return -1;
      if (slots[at] === hash) return i;
    }
  }

  /** The slot after `slot`, to continue a walk. */
  after(slot: number): number {
    return (slot + 1) & this.#mask;
  }

  segmentAt(slot: number): number {
    return this.#slots[slot * STRIDE + 1] as number;
  }

  offsetAt(slot: number): number {
    return this.#slots[slot * STRIDE + 2] as number;
  }

  /** Adds a location for `hash`. Callers remove the id's previous location first. */
  insert(hash: number, seg: number, off: number): void {
    if ((this.count + 1) * 2 > this.#mask + 1) this.#grow();
    const slots = this.#slots;
    const mask = this.#mask;
    let i = hash & mask;
    while (slots[i * STRIDE + 1] !== EMPTY) i = (i + 1) & mask;
    const at = i * STRIDE;
    slots[at] = hash;
    slots[at + 1] = seg;
    slots[at + 2] = off;
    this.count++;
  }

  /** The slot holding exactly this location for `hash`, or -1. */
  find(hash: number, seg: number, off: number): number {
    const slots = this.#slots;
    for (let i = this.next(this.start(hash), hash); i !== -1; i = this.next(this.after(i), hash)) {
      if (slots[i * STRIDE + 1] === seg && slots[i * STRIDE + 2] === off) return i;
    }
    return -1;
  }

  /** Empties `slot`, shifting later entries of its run back so that lookups need no tombstones. */
  remove(slot: number): void {
    const slots = this.#slots;
    const mask = this.#mask;
    let hole = slot;
    for (let j = (slot + 1) & mask; slots[j * STRIDE + 1] !== EMPTY; j = (j + 1) & mask) {
      const home = (slots[j * STRIDE] as number) & mask;
      // Move j into the hole unless its home lies cyclically in (hole, j].
      const stays = hole <= j ? home > hole && home <= j : home > hole || home <= j;
      if (stays) continue;
      const to = hole * STRIDE;
      const from = j * STRIDE;
      slots[to] = slots[from] as number;
      slots[to + 1] = slots[from + 1] as number;
      slots[to + 2] = slots[from + 2] as number;
      hole = j;
    }
    slots[hole * STRIDE + 1] = EMPTY;
    this.count--;
    // Give memory back once the load falls far below what the table was grown for.
    if (this.count * 8 < this.#mask + 1 && this.#mask + 1 > 64) this.#resize((this.#mask + 1) / 2);
  }

  #grow(): void {
    this.#resize((this.#mask + 1) * 2);
  }

  #resize(capacity: number): void {
    const old = this.#slots;
    this.#slots = ReplyIndex.#empty(capacity);
    this.#mask = capacity - 1;
    this.count = 0;
    for (let at = 0; at < old.length; at += STRIDE) {
      if (old[at + 1] !== EMPTY)
        this.insert(old[at] as number, old[at + 1] as number, old[at + 2] as number);
    }
  }
}
