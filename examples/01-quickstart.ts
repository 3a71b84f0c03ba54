/**
 * Quickstart: one contract, a responder and a client. Runs in-process on the memory transport;
 * set NATS_URL (e.g. nats://127.0.0.1:4222) to run the same code over NATS.
 *
 *   npm run example
 *   NATS_URL=nats://127.0.0.1:4222 npm run example
 */

import {
  createClient,
  createResponder,
  defineContract,
  isRpcError,
  memoryTransport,
  method,
  natsTransport,
  type Transport,
} from "ricochet";
import { z } from "zod";

// 1. The contract: import it on both sides.
export const billing = defineContract({
  service: "billing",
  version: "1.0.0",
  methods: {
    charge: method({
      request: z.object({ accountId: z.string(), amountCents: z.number().int().positive() }),
      response: z.object({ chargeId: z.string(), balanceCents: z.number().int() }),
      errors: { INSUFFICIENT_FUNDS: z.object({ balanceCents: z.number() }) },
    }),
  },
});

// 2. A transport: in-process by default, NATS when NATS_URL is set.
async function openTransport(): Promise<{ transport: Transport; close: () => Promise<void> }> {
  const url = process.env.NATS_URL;
  if (!url) {
    const transport = memoryTransport();
    return { transport, close: () => transport.close() };
  }
  const { connect } = await import("@nats-io/transport-node");
  const nc = await connect({ servers: url });
  return { transport: natsTransport(nc), close: () => nc.drain() };
}

const { transport, close } = await openTransport();

// 3. The responder: validates, runs the handler, answers.
const balances = new Map<string, number>([["acct-1", 1_000]]);
const responder = createResponder(
  billing,
  {
    charge: async ({ accountId, amountCents }, ctx) => {
      const balance = balances.get(accountId) ?? 0;
      if (amountCents > balance) throw ctx.fail("INSUFFICIENT_FUNDS", { balanceCents: balance });
      balances.set(accountId, balance - amountCents);
      return { chargeId: `ch_${ctx.id}`, balanceCents: balance - amountCents };
    },
  },
  { transport },
);
await responder.start();

// 4. The client: one typed function per method.
const client = createClient(billing, { transport, timeoutMs: 2_000 });

for (const amountCents of [250, 500]) {
  const out = await client.charge(
    { accountId: "acct-1", amountCents },
    { id: `order-${amountCents}` },
  );
  console.log(`charged ${amountCents} -> ${out.chargeId}, balance ${out.balanceCents}`);
}

try {
  await client.charge({ accountId: "acct-1", amountCents: 5_000 });
} catch (err) {
  if (!isRpcError(err)) throw err;
  console.log(`refused: ${err.code} ${JSON.stringify(err.details)}`);
}

await client.close();
await responder.stop();
await close();
