import { expect, it } from "vitest";
import { z } from "zod";
import { createClient } from "../../src/client.js";
import { defineContract, method } from "../../src/contract.js";
import { memoryDedupe } from "../../src/dedupe/memory.js";
import type { DedupeStore } from "../../src/dedupe/types.js";
import { createResponder } from "../../src/responder.js";
import { memoryTransport } from "../../src/transport/memory.js";

const orders = defineContract({
  service: "orders",
  version: "1.0.0",
  methods: {
    place: method({
      request: z.object({ sku: z.string() }),
      response: z.object({ n: z.number() }),
    }),
    get: method({
      request: z.object({ sku: z.string() }),
      response: z.object({ n: z.number() }),
      dedupe: false, // a read: safe to run twice, not worth a store entry
    }),
  },
});

it("skips the dedupe store for a method declared dedupe: false, and only for it", async () => {
  const transport = memoryTransport();
  const inner = memoryDedupe();
  const claimed: string[] = [];
  const store: DedupeStore = {
    claim(id, fingerprint, deadline) {
      claimed.push(id);
      return inner.claim(id, fingerprint, deadline);
    },
  };
  const runs = { place: 0, get: 0 };
  const responder = createResponder(
    orders,
    {
      place: () => ({ n: ++runs.place }),
      get: () => ({ n: ++runs.get }),
    },
    { transport, dedupe: store },
  );
  await responder.start();
  const client = createClient(orders, { transport });
  await client.place({ sku: "a" }, { id: "p-1" });
  expect(await client.place({ sku: "a" }, { id: "p-1" })).toEqual({ n: 1 }); // replayed
  await client.get({ sku: "a" }, { id: "g-1" });
  expect(await client.get({ sku: "a" }, { id: "g-1" })).toEqual({ n: 2 }); // ran again
  expect(claimed).toEqual(["p-1", "p-1"]);
  expect(orders.methods.get.dedupe).toBe(false);
  expect(orders.methods.place.dedupe).toBe(true);
  await client.close();
  await responder.stop();
  await transport.close();
});
