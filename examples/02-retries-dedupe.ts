/**
 * Retries and deduplication: a call made before its responder is up is retried until one answers;
 * the same call id runs its handler once; reusing an id for another request is refused.
 *
 *   npx tsx examples/02-retries-dedupe.ts
 */

import {
  createClient,
  createResponder,
  defineContract,
  isRpcError,
  memoryDedupe,
  memoryTransport,
  method,
} from "ricochet";
import { z } from "zod";

const orders = defineContract({
  service: "orders",
  version: "1.0.0",
  methods: {
    place: method({
      request: z.object({ sku: z.string(), qty: z.number().int().positive() }),
      response: z.object({ orderId: z.string() }),
    }),
  },
});

const transport = memoryTransport();

let placed = 0;
const responder = createResponder(
  orders,
  {
    place: async ({ sku, qty }, ctx) => {
      placed++;
      return { orderId: `ord_${ctx.id}_${sku}x${qty}` };
    },
  },
  { transport, dedupe: memoryDedupe({ ttlMs: 60_000 }) },
);

const client = createClient(orders, {
  transport,
  timeoutMs: 3_000,
  retry: { attempts: 5, baseMs: 50, maxMs: 400 },
  // The responder comes up once the client has retried, as if it had been restarting. A retry after
  // NO_RESPONDERS does not spend an attempt: the call keeps trying until its deadline.
  onRetry: ({ code }) => {
    if (code === "NO_RESPONDERS") void responder.start();
  },
});

// 1. The call goes out before any responder runs: it gets NO_RESPONDERS, backs off and retries.
const early = client.place({ sku: "tea", qty: 2 }, { id: "order-1" });
console.log("retried until a responder started:", (await early).orderId);

// 2. The same id again (a retry after a lost reply, say): the stored reply, no second order.
const again = await client.place({ sku: "tea", qty: 2 }, { id: "order-1" });
console.log(`same id again: ${again.orderId}; handler ran ${placed} time(s)`);

// 3. The same id for a different request is a bug in the caller: refused with ID_REUSED.
try {
  await client.place({ sku: "coffee", qty: 1 }, { id: "order-1" });
} catch (err) {
  if (!isRpcError(err)) throw err;
  console.log(`reused id: ${err.code}`);
}

await client.close();
await responder.stop();
await transport.close();
