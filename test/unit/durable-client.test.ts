import { expect, it } from "vitest";
import { createClient } from "../../src/client.js";
import { createResponder } from "../../src/responder.js";
import { memoryTransport } from "../../src/transport/memory.js";
import type { DurableQueue, EnqueueReceipt } from "../../src/transport/queue.js";
import { billing, billingHandlers } from "../fixtures/billing.js";

it("asks for the result again when a retried store finds the command already stored (its first confirmation, and perhaps its reply, were lost)", async () => {
  const transport = memoryTransport();
  let runs = 0;
  const responder = createResponder(
    billing,
    {
      ...billingHandlers,
      charge: (req, ctx) => {
        runs++;
        return { chargeId: `ch_${ctx.id}`, balanceCents: 100 - req.amountCents };
      },
    },
    { transport },
  );
  await responder.start();
  let stores = 0;
  const queue: DurableQueue = {
    maxDeliver: 5,
    transientForMs: 60_000,
    retryDelayMs: 10,
    // The first store lands but its confirmation never comes; the retry finds it already stored.
    enqueue: () => {
      stores++;
      if (stores === 1) return new Promise<EnqueueReceipt>(() => undefined);
      return Promise.resolve({ duplicate: true, location: "stream RICOCHET_billing, seq 1" });
    },
    consume: () => Promise.reject(new Error("not used")),
  };
  const client = createClient(billing, {
    transport,
    timeoutMs: 3_000,
    retry: { attempts: 3, baseMs: 1, maxMs: 1 },
    durable: { queue, methods: ["charge"] },
  });
  // Without asking again, nothing would ever answer: the command's reply is gone.
  await expect(
    client.charge({ accountId: "a", amountCents: 5 }, { id: "lost-ack-1" }),
  ).resolves.toEqual({
    chargeId: "ch_lost-ack-1",
    balanceCents: 95,
  });
  expect(stores).toBe(2);
  expect(runs).toBe(1);
  await client.close();
  await responder.stop();
  await transport.close();
});
