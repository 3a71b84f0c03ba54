/**
 * Permissions on a real nats-server, with the authorization blocks of docs/nats-server/authorization.conf
 * (the ones docs/security.md shows): what each role needs is enough, and what it lacks fails fast,
 * naming the subject, while the connection goes on serving what it may do.
 */
import { readFileSync } from "node:fs";
import { jetstream } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/nats-core";
import { connect } from "@nats-io/transport-node";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { createClient } from "../../src/client.js";
import { defineContract, method } from "../../src/contract.js";
import { kvDedupe } from "../../src/dedupe/kv.js";
import { isRpcError } from "../../src/errors.js";
import { createResponder } from "../../src/responder.js";
import { jetstreamQueue } from "../../src/transport/jetstream.js";
import { natsTransport } from "../../src/transport/nats.js";
import { billing, billingHandlers } from "../fixtures/billing.js";
import { type NatsServer, startNatsServer } from "../support/nats-server.js";

const AUTHORIZATION = readFileSync(
  new URL("../../docs/nats-server/authorization.conf", import.meta.url),
  "utf8",
);

/** A service none of the users may use. */
const shop = defineContract({
  service: "shop",
  version: "1.0.0",
  methods: { order: method({ request: z.object({}), response: z.object({}) }) },
});

const PASSWORDS: Record<string, string> = {
  "billing-client": "client-secret",
  "billing-durable-client": "durable-client-secret",
  "billing-responder": "responder-secret",
  "billing-durable-responder": "durable-responder-secret",
  admin: "admin-secret",
};

/** Resolves with how long `p` took to settle, and its error (or value). */
async function timed<T>(p: Promise<T>): Promise<{ ms: number; error: unknown; value?: T }> {
  const started = performance.now();
  try {
    const value = await p;
    return { ms: performance.now() - started, error: undefined, value };
  } catch (error) {
    return { ms: performance.now() - started, error };
  }
}

describe("permissions, with the documented authorization blocks", () => {
  let server: NatsServer;
  const cleanup: Array<() => Promise<unknown>> = [];
  const times: Record<string, number> = {};

  beforeAll(async () => {
    // The documented users, plus an admin that sets up what the test needs.
    const config = AUTHORIZATION.replace(
      "users = [",
      'users = [\n    { user: admin, password: "admin-secret" }',
    );
    server = await startNatsServer({ config });
  });
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c().catch(() => undefined);
  });
  afterAll(async () => {
    console.log(`time to error, ms: ${JSON.stringify(times)}`);
    await server?.[Symbol.asyncDispose]();
  });

  async function as(user: string): Promise<NatsConnection> {
    const nc = await connect({ servers: server.url, user, pass: PASSWORDS[user] ?? "" });
    cleanup.push(() => nc.close());
    return nc;
  }

  async function billingResponder(user = "billing-responder") {
    const r = createResponder(billing, billingHandlers, {
      transport: natsTransport(await as(user)),
    });
    await r.start();
    cleanup.push(() => r.stop());
    return r;
  }

  it("a call whose publish is denied rejects at once with PERMISSION_DENIED naming the subject; the same connection still serves allowed calls", async () => {
    await billingResponder();
    const transport = natsTransport(await as("billing-client"));
    const shopClient = createClient(shop, { transport });
    const billingClient = createClient(billing, { transport });
    cleanup.push(
      () => shopClient.close(),
      () => billingClient.close(),
    );
    const denied = await timed(shopClient.order({}, { timeoutMs: 5_000 }));
    times["client publish"] = Math.round(denied.ms);
    expect(isRpcError(denied.error) && denied.error.code).toBe("PERMISSION_DENIED");
    expect((denied.error as Error).message).toMatch(/may not publish to shop\.order/);
    expect((denied.error as Error).message).toMatch(/docs\/security\.md/);
    expect(denied.ms).toBeLessThan(1000);
    await expect(billingClient.echo({ text: "still served" })).resolves.toEqual({
      text: "still served",
    });
  });

  it("a client that may not subscribe to its reply subjects fails its calls at once, naming the inbox", async () => {
    // billing-client may subscribe to _INBOX.> only.
    const client = createClient(billing, {
      transport: natsTransport(await as("billing-client"), { inboxPrefix: "_REPLIES" }),
    });
    cleanup.push(() => client.close());
    const denied = await timed(client.echo({ text: "x" }, { timeoutMs: 5_000 }));
    times["client subscribe (inbox)"] = Math.round(denied.ms);
    expect(isRpcError(denied.error) && denied.error.code).toBe("PERMISSION_DENIED");
    expect((denied.error as Error).message).toMatch(
      /may not subscribe to its reply subject _REPLIES/,
    );
    expect(denied.ms).toBeLessThan(1000);
  });

  it("a responder whose subscribe is denied fails start() naming the subject", async () => {
    const r = createResponder(
      shop,
      { order: () => ({}) },
      {
        transport: natsTransport(await as("billing-responder")),
      },
    );
    const failed = await timed(r.start());
    times["responder subscribe"] = Math.round(failed.ms);
    expect((failed.error as Error)?.message).toMatch(/refused to subscribe to shop\.order/);
    expect(failed.ms).toBeLessThan(1000);
    // Nothing was left serving.
    expect(r.inFlight).toBe(0);
  });

  it("a durable call whose store is denied rejects at once with PERMISSION_DENIED naming the stream's subject", async () => {
    const nc = await as("billing-client");
    const client = createClient(billing, {
      transport: natsTransport(nc),
      durable: { queue: jetstreamQueue(jetstream(nc)), methods: ["echo"] },
    });
    cleanup.push(() => client.close());
    const denied = await timed(client.echo({ text: "x" }, { timeoutMs: 5_000 }));
    times["durable client publish"] = Math.round(denied.ms);
    expect(isRpcError(denied.error) && denied.error.code).toBe("PERMISSION_DENIED");
    expect((denied.error as Error).message).toMatch(/ricochet\.durable\.billing\.echo/);
    expect(denied.ms).toBeLessThan(1000);
  });

  it("a durable responder without the JetStream permissions fails start() naming what it may not use", async () => {
    const nc = await as("billing-client"); // may use its inbox, not JetStream
    const r = createResponder(billing, billingHandlers, {
      transport: natsTransport(nc),
      durable: jetstreamQueue(jetstream(nc)),
    });
    const failed = await timed(r.start());
    times["durable responder start"] = Math.round(failed.ms);
    expect((failed.error as Error)?.message).toMatch(
      /may not use JetStream's API: the server refused publish to \$JS\.API\.INFO/,
    );
    expect(failed.ms).toBeLessThan(1000);
  });

  it("a responder that may not write its kvDedupe bucket answers PERMISSION_DENIED at once, naming the bucket's subject", async () => {
    const admin = await as("admin");
    const kv = await new Kvm(admin).create("billing-dedupe-denied", { history: 1 });
    cleanup.push(() => kv.destroy());
    const nc = await as("billing-durable-responder"); // granted billing-dedupe, not this bucket
    const store = kvDedupe(await new Kvm(nc).open("billing-dedupe-denied", { bindOnly: true }));
    const r = createResponder(billing, billingHandlers, {
      transport: natsTransport(nc),
      dedupe: store,
    });
    await r.start();
    cleanup.push(async () => {
      await r.stop();
      store.close();
    });
    const client = createClient(billing, { transport: natsTransport(await as("billing-client")) });
    cleanup.push(() => client.close());
    const denied = await timed(client.echo({ text: "x" }, { timeoutMs: 5_000 }));
    times["kv write"] = Math.round(denied.ms);
    expect(isRpcError(denied.error) && denied.error.code).toBe("PERMISSION_DENIED");
    expect((denied.error as Error).message).toMatch(/refused \S*KV[._]billing-dedupe-denied/);
    expect(denied.ms).toBeLessThan(1000);
  });

  it("the documented durable blocks are enough: a durable call with kvDedupe completes, creating the streams and consumer", async () => {
    const admin = await as("admin");
    const kv = await new Kvm(admin).create("billing-dedupe", { history: 1, ttl: 120_000 });
    cleanup.push(() => kv.destroy());
    const rnc = await as("billing-durable-responder");
    const store = kvDedupe(await new Kvm(rnc).open("billing-dedupe", { bindOnly: true }));
    const r = createResponder(billing, billingHandlers, {
      transport: natsTransport(rnc),
      durable: jetstreamQueue(jetstream(rnc)),
      dedupe: store,
    });
    await r.start();
    cleanup.push(async () => {
      await r.stop();
      store.close();
    });
    const cnc = await as("billing-durable-client");
    const client = createClient(billing, {
      transport: natsTransport(cnc),
      durable: { queue: jetstreamQueue(jetstream(cnc)), methods: ["charge"] },
    });
    cleanup.push(() => client.close());
    const first = await client.charge({ accountId: "a", amountCents: 5 }, { id: "perm-1" });
    expect(first).toEqual({ chargeId: "ch_perm-1", balanceCents: 95 });
    // A core call with the same id is answered from the bucket.
    const core = createClient(billing, { transport: natsTransport(await as("billing-client")) });
    cleanup.push(() => core.close());
    await expect(
      core.charge({ accountId: "a", amountCents: 5 }, { id: "perm-1" }),
    ).resolves.toEqual(first);
  });
});
