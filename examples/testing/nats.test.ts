/**
 * An example to copy: an integration test of your own service against a real nats-server, with
 * `startNats` from `ricochet/testing`. It runs the server in a container when Docker is there (the
 * official `nats` image, or RICOCHET_NATS_IMAGE), else from the local binary. Run with vitest.
 */
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { createClient, createResponder, natsTransport } from "ricochet";
import { type NatsTestServer, startNats } from "ricochet/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { billing, handlers, ledger } from "./billing.js";

describe("billing on a real nats-server", () => {
  let nats: NatsTestServer;
  let nc: NatsConnection;
  beforeAll(async () => {
    nats = await startNats();
    console.log(nats.description); // which runtime serves this file, and why
    nc = await connect({ servers: nats.url, maxReconnectAttempts: -1, reconnectTimeWait: 50 });
  });
  afterAll(async () => {
    await nc?.close();
    await nats?.close();
  });

  it("charges once per order id, across a server restart", async () => {
    const transport = natsTransport(nc);
    const responder = createResponder(billing, handlers, { transport });
    await responder.start();
    const client = createClient(billing, { transport, timeoutMs: 10_000 });
    try {
      const before = ledger.length;
      await client.charge({ accountId: "acct-9", amountCents: 1 }, { id: "order-100" });

      await nats.restart(); // the server goes away and comes back; the connection reconnects
      // The same order id again (a caller's retry): answered from the store, not charged again.
      const again = await client.charge(
        { accountId: "acct-9", amountCents: 1 },
        { id: "order-100" },
      );
      expect(again.chargeId).toBe("ch_order-100");
      expect(ledger.length - before).toBe(1);
    } finally {
      await client.close();
      await responder.stop();
    }
  });
});
