/**
 * An example to copy: testing a service of your own against the failures ricochet promises to
 * survive, with `ricochet/testing`, on the in-memory bus (no server). Run with vitest.
 */
import { isRpcError } from "ricochet";
import { testContext, testPair } from "ricochet/testing";
import { describe, expect, it } from "vitest";
import { billing, handlers, ledger } from "./billing.js";

describe("billing", () => {
  it("charges once when its reply is lost and the client retries", async () => {
    await using pair = await testPair(billing, handlers, {
      // A short deadline: each attempt waits a third of it before the retry.
      client: { timeoutMs: 600, retry: { attempts: 3, baseMs: 1, maxMs: 5 } },
    });
    pair.responderBus.drop({ kind: "reply", times: 1 });
    const before = ledger.length;
    await pair.client.charge({ accountId: "acct-1", amountCents: 5 }, { id: "order-7" });
    expect(ledger.length - before).toBe(1);
  });

  it("refuses a charge above the balance, with typed details", async () => {
    const ctx = testContext(billing, "charge");
    const err = await Promise.resolve()
      .then(() => handlers.charge({ accountId: "acct-1", amountCents: 10_000 }, ctx))
      .catch((e: unknown) => e);
    expect(isRpcError(err) && err.code).toBe("INSUFFICIENT_FUNDS");
  });
});
