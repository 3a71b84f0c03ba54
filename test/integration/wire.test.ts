/**
 * The wire format, proven from outside: plain nats.js requests (no ricochet on the calling side) against
 * a ricochet responder, as a peer in another language or the `nats` CLI would send them.
 */
import { type NatsConnection, headers as natsHeaders } from "@nats-io/nats-core";
import { connect } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createClient } from "../../src/client.js";
import { createResponder, type Responder } from "../../src/responder.js";
import { natsTransport } from "../../src/transport/nats.js";
import { RecordHeaders } from "../../src/transport/nats-headers.js";
import { billing } from "../fixtures/billing.js";

const json = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
const parse = (d: Uint8Array) => JSON.parse(new TextDecoder().decode(d)) as Record<string, unknown>;

describe("wire protocol, from a plain NATS client", () => {
  let responderNc: NatsConnection;
  let raw: NatsConnection;
  let responder: Responder;
  let runs = 0;

  beforeAll(async () => {
    const servers = inject("natsUrl");
    [responderNc, raw] = await Promise.all([connect({ servers }), connect({ servers })]);
    responder = createResponder(
      billing,
      {
        charge: (req, ctx) => {
          runs++;
          if (req.amountCents > 100) throw ctx.fail("INSUFFICIENT_FUNDS", { balanceCents: 100 });
          return { chargeId: `ch_${ctx.id}`, balanceCents: 100 - req.amountCents };
        },
        echo: ({ text }) => ({ text }),
        ping: () => "pong" as const,
      },
      { transport: natsTransport(responderNc) },
    );
    await responder.start();
  });
  afterAll(async () => {
    await responder.stop();
    await Promise.all([responderNc.close(), raw.close()]);
  });

  it("answers a header-less request with a JSON body and no headers", async () => {
    const reply = await raw.request("billing.charge", json({ accountId: "a1", amountCents: 5 }), {
      timeout: 2000,
    });
    expect(reply.headers).toBeUndefined();
    expect(parse(reply.data)).toMatchObject({ balanceCents: 95 });
    expect(String(parse(reply.data).chargeId)).toMatch(/^ch_.+/);
  });

  it("uses Nats-Msg-Id as the call id when a plain client sends it", async () => {
    const h = natsHeaders();
    h.set("Nats-Msg-Id", "from-go-42");
    const reply = await raw.request("billing.charge", json({ accountId: "a1", amountCents: 5 }), {
      timeout: 2000,
      headers: h,
    });
    expect(parse(reply.data).chargeId).toBe("ch_from-go-42");
  });

  it("sends contract errors as NATS micro error headers with a {code, message, details} body", async () => {
    const reply = await raw.request("billing.charge", json({ accountId: "a1", amountCents: 500 }), {
      timeout: 2000,
    });
    expect(reply.headers?.get("Nats-Service-Error-Code")).toBe("400");
    expect(reply.headers?.get("Nats-Service-Error")).toBe(
      "billing.charge failed with INSUFFICIENT_FUNDS",
    );
    expect(parse(reply.data)).toEqual({
      code: "INSUFFICIENT_FUNDS",
      message: "billing.charge failed with INSUFFICIENT_FUNDS",
      details: { balanceCents: 100 },
    });
  });

  it("answers malformed JSON with an INVALID_REQUEST error reply, without running the handler", async () => {
    const before = runs;
    const reply = await raw.request("billing.charge", new TextEncoder().encode("{not json"), {
      timeout: 2000,
    });
    expect(reply.headers?.get("Nats-Service-Error-Code")).toBe("400");
    expect(parse(reply.data)).toMatchObject({
      code: "INVALID_REQUEST",
      message: expect.stringMatching(/not valid JSON/),
    });
    expect(runs).toBe(before);
  });

  it("answers a body that breaks the schema with INVALID_REQUEST and the issues", async () => {
    const reply = await raw.request("billing.charge", json({ accountId: 7 }), { timeout: 2000 });
    const body = parse(reply.data);
    expect(body.code).toBe("INVALID_REQUEST");
    expect(body.details).toMatchObject({
      issues: [{ path: ["accountId"] }, { path: ["amountCents"] }],
    });
  });

  it("answers a body near the server's max_payload (1 MB of JSON) and an empty body with INVALID_REQUEST", async () => {
    const big = json({ accountId: "x".repeat(1000 * 1000), amountCents: "no" });
    const bigReply = await raw.request("billing.charge", big, { timeout: 5000 });
    expect(parse(bigReply.data).code).toBe("INVALID_REQUEST");
    const empty = await raw.request("billing.charge", new Uint8Array(0), { timeout: 2000 });
    expect(parse(empty.data).code).toBe("INVALID_REQUEST");
  });

  it("serves a request whose header block nats.js cannot parse as a plain request, and keeps reading", async () => {
    // nats-server passes a header name with a space through; nats.js throws when it decodes it.
    const bad = new RecordHeaders({ "Bad Key": "x" });
    const reply = await raw.request("billing.charge", json({ accountId: "a1", amountCents: 5 }), {
      timeout: 2000,
      headers: bad,
    });
    expect(parse(reply.data)).toMatchObject({ balanceCents: 95 });
  });

  it("keeps serving ricochet clients after all of the above", async () => {
    const nc = await connect({ servers: inject("natsUrl") });
    const client = createClient(billing, { transport: natsTransport(nc) });
    try {
      await expect(client.charge({ accountId: "a2", amountCents: 1 })).resolves.toMatchObject({
        balanceCents: 99,
      });
    } finally {
      await client.close();
      await nc.close();
    }
  });

  it("runs a request that asks for no reply, and answers nothing", async () => {
    const before = runs;
    raw.publish("billing.charge", json({ accountId: "a1", amountCents: 1 }));
    await raw.flush();
    // The responder handles messages in arrival order, so this reply means the publish above has run too.
    await raw.request("billing.charge", json({ accountId: "a1", amountCents: 1 }), {
      timeout: 2000,
    });
    expect(runs).toBe(before + 2);
  });
});
