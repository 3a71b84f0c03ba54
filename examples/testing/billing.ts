/** The service under test in billing.test.ts: a contract and its handlers. */
import { defineContract, type Handlers, method } from "ricochet";
import { z } from "zod";

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

/** Every charge made, for the tests to count. */
export const ledger: string[] = [];
let balance = 1_000;

export const handlers: Handlers<typeof billing> = {
  charge: ({ amountCents }, ctx) => {
    if (amountCents > balance) throw ctx.fail("INSUFFICIENT_FUNDS", { balanceCents: balance });
    balance -= amountCents;
    ledger.push(ctx.id);
    return { chargeId: `ch_${ctx.id}`, balanceCents: balance };
  },
};
