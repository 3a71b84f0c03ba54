/**
 * Collections for entries that come and go with calls, tens of thousands a second: the client's
 * pending calls, the responder's running jobs and held calls, the dedupe store's running calls.
 *
 * V8's `Map` and `Set` are the wrong tool for that churn. When one rehashes (it does every few dozen
 * insertions and deletions, however small it stays), the old table keeps a pointer to its successor,
 * for iterators still walking it. Once one table of the chain has reached the old generation, the
 * young-generation collector treats its pointer as a root: the next table survives, is promoted in
 * turn, and keeps the one after it alive, with every key and value each table held, until a full
 * collection. Every call's objects are then promoted instead of dying young. Measured on the raw
 * nats.js pub/sub loop of `bench/` (a `Map` of pending replies, 64 in flight): 180 of 250 young
 * collections promoted about 1.7 MB each, and replacing the `Map` with the arrays below brought
 * that to 4 of 460 and the loop's throughput up by a quarter (docs/performance.md, "Garbage that
 * does not die young"; bench/map-churn.ts).
 *
 * These collections keep plain arrays. A removed entry's slot is cleared at once, so nothing dead
 * stays reachable from them, and when they grow their old storage is dropped, not linked.
 *
 * @module
 */

/**
 * Slots below which a collection does not shrink. A responder's running calls, for one, go from none
 * to a batch's worth and back with every read from the socket; a collection that shrank each time
 * the batch drained would grow again with the next, allocating its arrays anew each time. (A burst
 * past this many still gives its memory back when it drains.)
 */
const KEEP = 1024;

/** An unordered collection of entries; adding one returns the handle that removes it. */
export class SlotSet<T> {
  readonly #items: Array<T | undefined> = [];
  /** Free slots: numbers only, so the garbage collector sees nothing in it. */
  readonly #free: number[] = [];
  #size = 0;

  /** Entries held. */
  get size(): number {
    return this.#size;
  }

  /** Adds `item`; returns its handle for {@link delete}. */
  add(item: T): number {
    const slot = this.#free.pop() ?? this.#items.length;
    this.#items[slot] = item;
    this.#size++;
    return slot;
  }

  /** Removes `item`, added with handle `slot`, if it is still there (removing it twice is harmless). */
  delete(slot: number, item: T): void {
    const items = this.#items;
    if (items[slot] !== item) return;
    items[slot] = undefined;
    this.#free.push(slot);
    if (--this.#size === 0 && items.length > KEEP) {
      // Empty after a burst grew it past what it keeps: start again small.
      items.length = 0;
      this.#free.length = 0;
    }
  }

  /** A snapshot of the entries, safe to iterate while they are removed. */
  values(): T[] {
    const out: T[] = [];
    for (const item of this.#items) if (item !== undefined) out.push(item);
    return out;
  }
}

const EMPTY_KEY = undefined;

/**
 * A hash table from strings to values (open addressing, linear probing, deletion without
 * tombstones). Keys are hashed with a seed of the table's own, so that keys a caller chose to collide
 * (call ids come from callers) collide in one process only, by chance.
 */
export class KeyedSlots<V> {
  #keys: Array<string | undefined>;
  #values: Array<V | undefined>;
  #hashes: Int32Array;
  #mask: number;
  #size = 0;
  readonly #seed = (Math.random() * 2 ** 32) | 0;

  constructor(capacity = 64) {
    this.#keys = new Array<string | undefined>(capacity).fill(EMPTY_KEY);
    this.#values = new Array<V | undefined>(capacity).fill(undefined);
    this.#hashes = new Int32Array(capacity);
    this.#mask = capacity - 1;
  }

  /** Entries held. */
  get size(): number {
    return this.#size;
  }

  /** Slots allocated (a power of two): for tests. */
  get capacity(): number {
    return this.#mask + 1;
  }

  /**
   * The hash this table files `key` under. A caller that reaches one key several times passes it to
   * the `…At` methods, so that the key is hashed once.
   */
  hashOf(key: string): number {
    return hashKey(key, this.#seed);
  }

  /** The value for `key`, or `undefined`. */
  get(key: string): V | undefined {
    return this.getAt(key, hashKey(key, this.#seed));
  }

  /** {@link get} for a key whose {@link hashOf} is `hash`. */
  getAt(key: string, hash: number): V | undefined {
    const slot = this.#find(key, hash);
    return slot === -1 ? undefined : this.#values[slot];
  }

  /** Sets the value for `key`, replacing one it had. */
  set(key: string, value: V): void {
    this.setAt(key, hashKey(key, this.#seed), value);
  }

  /** {@link set} for a key whose {@link hashOf} is `hash`. */
  setAt(key: string, hash: number, value: V): void {
    const found = this.#find(key, hash);
    if (found !== -1) {
      this.#values[found] = value;
      return;
    }
    if ((this.#size + 1) * 2 > this.#mask + 1) this.#resize((this.#mask + 1) * 2);
    this.#insert(key, value, hash);
  }

  /** Removes `key`; returns whether it was there. */
  delete(key: string): boolean {
    return this.deleteAt(key, hashKey(key, this.#seed));
  }

  /** {@link delete} for a key whose {@link hashOf} is `hash`. */
  deleteAt(key: string, hash: number): boolean {
    const slot = this.#find(key, hash);
    if (slot === -1) return false;
    const keys = this.#keys;
    const values = this.#values;
    const hashes = this.#hashes;
    const mask = this.#mask;
    // Shift the rest of the run back over the hole, so that lookups need no tombstones.
    let hole = slot;
    for (let j = (slot + 1) & mask; keys[j] !== EMPTY_KEY; j = (j + 1) & mask) {
      const home = (hashes[j] as number) & mask;
      // j stays unless the hole lies cyclically between its home and it.
      const stays = hole <= j ? home > hole && home <= j : home > hole || home <= j;
      if (stays) continue;
      keys[hole] = keys[j];
      values[hole] = values[j];
      hashes[hole] = hashes[j] as number;
      hole = j;
    }
    keys[hole] = EMPTY_KEY;
    values[hole] = undefined;
    this.#size--;
    // Give memory back once far below what a burst grew it to, down to what it keeps.
    if (this.#size * 8 < mask + 1 && mask + 1 > KEEP) this.#resize((mask + 1) / 2);
    return true;
  }

  /** A snapshot of the values, safe to iterate while entries are removed. */
  values(): V[] {
    const out: V[] = [];
    const keys = this.#keys;
    for (let i = 0; i < keys.length; i++) {
      if (keys[i] !== EMPTY_KEY) out.push(this.#values[i] as V);
    }
    return out;
  }

  #find(key: string, hash: number): number {
    const keys = this.#keys;
    const hashes = this.#hashes;
    const mask = this.#mask;
    for (let i = hash & mask; ; i = (i + 1) & mask) {
      const k = keys[i];
      if (k === EMPTY_KEY) return -1;
      if (hashes[i] === hash && k === key) return i;
    }
  }

  #insert(key: string, value: V, hash: number): void {
    const keys = this.#keys;
    const mask = this.#mask;
    let i = hash & mask;
    while (keys[i] !== EMPTY_KEY) i = (i + 1) & mask;
    keys[i] = key;
    this.#values[i] = value;
    this.#hashes[i] = hash;
    this.#size++;
  }

  #resize(capacity: number): void {
    const keys = this.#keys;
    const values = this.#values;
    const hashes = this.#hashes;
    this.#keys = new Array<string | undefined>(capacity).fill(EMPTY_KEY);
    this.#values = new Array<V | undefined>(capacity).fill(undefined);
    this.#hashes = new Int32Array(capacity);
    this.#mask = capacity - 1;
    this.#size = 0;
    for (let i = 0; i < keys.length; i++) {
      const k = keys[i];
      if (k !== EMPTY_KEY) this.#insert(k, values[i] as V, hashes[i] as number);
    }
  }
}

/**
 * FNV-1a over the UTF-16 code units of `s`, as a signed 32-bit integer, from `seed`, with a final mix
 * so that the low bits (the ones a table of 2^n slots looks at) depend on every character.
 */
export function hashKey(s: string, seed: number): number {
  let h = seed | 0;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  return h;
}
