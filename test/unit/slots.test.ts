/**
 * The collections for per-call churn (src/slots.ts) behave like the Map and Set they replace: random
 * sequences of operations give the same answers as a Map (or Set) given the same sequence, through
 * growth, shrinking and deletions that shift entries back (a few hundred keys in tables of 64 to 1,024
 * slots collide and wrap around the end of the table by chance, with every seed).
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { KeyedSlots, SlotSet } from "../../src/slots.js";

type Op =
  | { op: "set"; key: string; value: number }
  | { op: "delete"; key: string }
  | { op: "get"; key: string };

/** Few distinct keys, so that sets, gets and deletes meet; some long, some empty, some non-ASCII. */
const key = fc.oneof(
  fc.integer({ min: 0, max: 300 }).map((n) => `k${n}`),
  fc.constantFrom("", "é", "日本", "a".repeat(64), "x~y.z"),
);
const ops = fc.array(
  fc.oneof(
    fc.record({ op: fc.constant("set" as const), key, value: fc.integer() }),
    fc.record({ op: fc.constant("delete" as const), key }),
    fc.record({ op: fc.constant("get" as const), key }),
  ),
  { maxLength: 2000 },
);

describe("KeyedSlots", () => {
  it("answers like a Map for any sequence of set, get and delete", () => {
    fc.assert(
      fc.property(ops, (sequence: Op[]) => {
        const table = new KeyedSlots<number>();
        const model = new Map<string, number>();
        for (const o of sequence) {
          if (o.op === "set") {
            table.set(o.key, o.value);
            model.set(o.key, o.value);
          } else if (o.op === "delete") {
            expect(table.delete(o.key)).toBe(model.delete(o.key));
          } else {
            expect(table.get(o.key)).toBe(model.get(o.key));
          }
          expect(table.size).toBe(model.size);
        }
        expect(table.values().sort()).toEqual([...model.values()].sort());
        for (const k of model.keys()) expect(table.get(k)).toBe(model.get(k));
      }),
      { numRuns: 300 },
    );
  });

  it("grows to hold many entries and shrinks back when they go", () => {
    const table = new KeyedSlots<number>();
    for (let i = 0; i < 50_000; i++) table.set(`id-${i}`, i);
    expect(table.size).toBe(50_000);
    for (let i = 0; i < 50_000; i += 7) expect(table.get(`id-${i}`)).toBe(i);
    for (let i = 0; i < 50_000; i++) expect(table.delete(`id-${i}`)).toBe(true);
    expect(table.size).toBe(0);
    expect(table.get("id-1")).toBeUndefined();
    expect(table.values()).toEqual([]);
  });

  it("keeps its slots when batches of calls come and drain, and gives back what a large burst took", () => {
    // A responder's running calls: a batch's worth arrives with one read from the socket, then drains.
    const table = new KeyedSlots<number>();
    let grown = 0;
    for (let batch = 0; batch < 50; batch++) {
      for (let i = 0; i < 100; i++) table.set(`b${batch}-${i}`, i);
      if (batch === 0) grown = table.capacity;
      for (let i = 0; i < 100; i++) table.delete(`b${batch}-${i}`);
      expect(table.capacity).toBe(grown); // not shrunk, so the next batch does not grow it again
    }
    expect(grown).toBeGreaterThanOrEqual(200);
    for (let i = 0; i < 50_000; i++) table.set(`id-${i}`, i);
    expect(table.capacity).toBeGreaterThanOrEqual(100_000);
    for (let i = 0; i < 50_000; i++) table.delete(`id-${i}`);
    expect(table.capacity).toBe(1024);
  });

  it("holds a value that is undefined-like without losing the key", () => {
    const table = new KeyedSlots<number | null>();
    table.set("a", null);
    table.set("b", 0);
    expect(table.get("a")).toBeNull();
    expect(table.get("b")).toBe(0);
    expect(table.delete("a")).toBe(true);
    expect(table.get("b")).toBe(0);
  });
});

describe("SlotSet", () => {
  it("holds what was added and not removed, through any sequence", () => {
    fc.assert(
      fc.property(
        fc.array(fc.oneof(fc.constant(-1), fc.nat({ max: 50 })), { maxLength: 1000 }),
        (sequence) => {
          const set = new SlotSet<{ n: number }>();
          const model = new Map<{ n: number }, number>();
          let n = 0;
          for (const step of sequence) {
            if (step === -1 || model.size === 0) {
              const item = { n: n++ };
              model.set(item, set.add(item));
            } else {
              const [item, slot] = [...model][step % model.size] as [{ n: number }, number];
              set.delete(slot, item);
              model.delete(item);
            }
            expect(set.size).toBe(model.size);
          }
          const held = set.values().map((i) => i.n);
          expect(held.sort((a, b) => a - b)).toEqual([...model.keys()].map((i) => i.n));
        },
      ),
      { numRuns: 300 },
    );
  });

  it("starts again small after a burst drains, and a handle from before it removes nothing after", () => {
    const set = new SlotSet<{ n: number }>();
    // Past the 1,024 slots below which a set does not shrink.
    const burst = Array.from({ length: 2000 }, (_, n) => ({ n }));
    const handles = burst.map((item) => set.add(item));
    expect(new Set(handles).size).toBe(2000);
    // Drained in an order unlike the one they came in.
    for (let i = 0; i < 2000; i++) {
      const k = (i * 37) % 2000;
      set.delete(handles[k] as number, burst[k] as { n: number });
    }
    expect(set.size).toBe(0);
    expect(set.values()).toEqual([]);
    const after = { n: 1000 };
    const slot = set.add(after);
    expect(slot).toBe(0); // started again from the first slot
    for (let k = 0; k < 2000; k++) set.delete(handles[k] as number, burst[k] as { n: number });
    expect(set.values()).toEqual([after]);
  });

  it("ignores a second removal of an item whose slot another item now holds", () => {
    const set = new SlotSet<string>();
    const a = set.add("a");
    set.delete(a, "a");
    const b = set.add("b");
    expect(b).toBe(a); // the slot is reused
    set.delete(a, "a"); // a stale handle: nothing happens
    expect(set.values()).toEqual(["b"]);
    expect(set.size).toBe(1);
  });
});
