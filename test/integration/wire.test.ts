/**
 * The wire format, proven from outside: plain nats.js requests (no ricochet on the calling side) against
 * a ricochet responder, as a peer in another language or the `nats` CLI would send them.
 */
import {
  createInbox,
  type Msg,
  type MsgHdrs,
  type NatsConnection,
  headers as natsHeaders,
} from "@nats-io/nats-core";
import { connect } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createClient } from "../../src/client.js";
import { HEADER_PROGRESS, parseCallToken } from "../../src/protocol.js";
import { createResponder, type Responder } from "../../src/responder.js";
import { natsTransport } from "../../src/transport/nats.js";
import { RecordHeaders } from "../../src/transport/nats-headers.js";
import { billing, billingHandlers, deferred, withoutProgress } from "../fixtures/billing.js";

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

/**
 * Compact calls (docs/protocol.md, "Call tokens"): a ricochet client with default options sends a core
 * call without headers, its id, attempt, budget and window in the last token of its reply subject.
 * Watched from a raw nats.js subscription, which gets a copy of every request.
 */
describe("compact calls: metadata in the reply subject, no headers", () => {
  let responderNc: NatsConnection;
  let raw: NatsConnection;
  let clientNc: NatsConnection;
  let responder: Responder;
  /** What the echo handler saw, per call. */
  const runs: Array<{ text: string; id: string; attempt: number; left: number }> = [];
  /** Echo calls whose text is a key here wait for it before answering. */
  const gates = new Map<string, Promise<void>>();

  beforeAll(async () => {
    const servers = inject("natsUrl");
    [responderNc, raw, clientNc] = await Promise.all([
      connect({ servers }),
      connect({ servers }),
      connect({ servers }),
    ]);
    responder = createResponder(
      billing,
      {
        ...billingHandlers,
        echo: async ({ text }, ctx) => {
          runs.push({ text, id: ctx.id, attempt: ctx.attempt, left: ctx.deadline - Date.now() });
          await gates.get(text);
          return { text };
        },
      },
      { transport: natsTransport(responderNc) },
    );
    await responder.start();
  });
  afterAll(async () => {
    await responder.stop();
    await Promise.all([responderNc.close(), raw.close(), clientNc.close()]);
  });

  /** Copies of the requests to `subject` as they cross the server, and a wait for the n-th. */
  async function watch(subject: string) {
    const seen: Msg[] = [];
    const waiters: Array<[number, () => void]> = [];
    const sub = raw.subscribe(subject, {
      callback: (_err, m) => {
        seen.push(m);
        for (const [n, resolve] of waiters) if (seen.length >= n) resolve();
      },
    });
    await raw.flush();
    const nth = (n: number) =>
      new Promise<void>((resolve) => {
        if (seen.length >= n) resolve();
        else waiters.push([n, resolve]);
      });
    return { seen, nth, stop: () => sub.unsubscribe() };
  }

  /** Publishes `body` from the raw connection with `<inbox>.<token>` as reply; resolves the first `count` messages to it. */
  async function rawCall(
    subject: string,
    body: unknown,
    token: string,
    options: { headers?: MsgHdrs; count?: number; onMessage?: (m: Msg) => void } = {},
  ): Promise<Msg[]> {
    const reply = `${createInbox()}.${token}`;
    const count = options.count ?? 1;
    const got: Msg[] = [];
    let timer: NodeJS.Timeout | undefined;
    const done = new Promise<Msg[]>((resolve, reject) => {
      const sub = raw.subscribe(reply, {
        max: count,
        callback: (_err, m) => {
          got.push(m);
          options.onMessage?.(m);
          if (got.length === count) resolve(got);
        },
      });
      timer = setTimeout(() => {
        sub.unsubscribe();
        reject(new Error(`${got.length} of ${count} messages on ${reply} within 5 s`));
      }, 5000);
    });
    await raw.flush();
    raw.publish(subject, json(body), {
      reply,
      ...(options.headers === undefined ? {} : { headers: options.headers }),
    });
    try {
      return await done;
    } finally {
      clearTimeout(timer);
    }
  }
  const codeOf = (m: Msg) =>
    m.headers?.get("Nats-Service-Error-Code") ? String(parse(m.data).code) : "OK";

  it("sends a call with default options as a plain message: no headers, id, attempt, budget and window in the reply token", async () => {
    const requests = await watch("billing.echo");
    const client = createClient(billing, { transport: natsTransport(clientNc) });
    try {
      await expect(
        client.echo({ text: "compact-1" }, { id: "compact-id-1", timeoutMs: 3000 }),
      ).resolves.toEqual({ text: "compact-1" });
      await requests.nth(1);
    } finally {
      requests.stop();
      await client.close();
    }
    const [m] = requests.seen as [Msg];
    expect(m.headers).toBeUndefined();
    expect(m.reply).toMatch(/^_INBOX\.[^.]+\.rc1~[0-9a-z]+~compact-id-1~1~\d+~\d+$/);
    const token = parseCallToken(m.reply ?? "");
    // The budget is what was left of the 3 s deadline; the window a third of it (3 attempts).
    expect(token).toMatchObject({ id: "compact-id-1", attempt: 1 });
    const { budgetMs, windowMs } = token as { budgetMs: number; windowMs: number };
    expect(budgetMs).toBeGreaterThan(2000);
    expect(budgetMs).toBeLessThanOrEqual(3000);
    expect(windowMs).toBe(Math.ceil(budgetMs / 3));
    // The responder took the id and the budget from the token.
    const run = runs.find((r) => r.text === "compact-1");
    expect(run).toMatchObject({ id: "compact-id-1", attempt: 1 });
    expect(run?.left).toBeGreaterThan(1500);
    expect(run?.left).toBeLessThanOrEqual(3000);
  });

  it("deduplicates a compact call: attempt 2, sent with the same id while attempt 1 runs, runs nothing and gets attempt 1's answer", async () => {
    const requests = await watch("billing.echo");
    const attempt2 = deferred();
    gates.set("dedupe-1", attempt2.promise);
    // A caller that asks for no progress messages: its slow attempt 1 is retried.
    const client = createClient(billing, {
      transport: withoutProgress(natsTransport(clientNc)),
      retry: { attempts: 2, baseMs: 1, maxMs: 1 },
    });
    try {
      const call = client.echo({ text: "dedupe-1" }, { id: "dedupe-id-1", timeoutMs: 2000 });
      await requests.nth(2);
      attempt2.resolve();
      await expect(call).resolves.toEqual({ text: "dedupe-1" });
    } finally {
      attempt2.resolve();
      requests.stop();
      await client.close();
    }
    expect(requests.seen.map((m) => m.headers)).toEqual([undefined, undefined]);
    const tokens = requests.seen.map((m) => parseCallToken(m.reply ?? "") as { key: string });
    expect(tokens).toMatchObject([
      { id: "dedupe-id-1", attempt: 1 },
      { id: "dedupe-id-1", attempt: 2 },
    ]);
    // Two reply subjects, one call: the key routes either attempt's reply to it.
    expect(requests.seen[0]?.reply).not.toBe(requests.seen[1]?.reply);
    expect(tokens[0]?.key).toBe(tokens[1]?.key);
    expect(runs.filter((r) => r.text === "dedupe-1")).toMatchObject([
      { id: "dedupe-id-1", attempt: 1 },
    ]);
  });

  it("honours a call token from any peer: the id deduplicates, the attempt and budget reach the handler, a budget of 0 is TIMEOUT", async () => {
    const body = { text: "peer-1" };
    const [first] = await rawCall("billing.echo", body, "rc1~k1~peer-id-1~3~1500~0");
    const [again] = await rawCall("billing.echo", body, "rc1~k2~peer-id-1~4~1500~0");
    expect(first?.headers).toBeUndefined();
    expect(parse((first as Msg).data)).toEqual(body);
    expect(parse((again as Msg).data)).toEqual(body);
    const seen = runs.filter((r) => r.text === "peer-1");
    expect(seen).toMatchObject([{ id: "peer-id-1", attempt: 3 }]);
    expect(seen[0]?.left).toBeGreaterThan(1000);
    expect(seen[0]?.left).toBeLessThanOrEqual(1500);
    const before = runs.length;
    const [late] = await rawCall("billing.echo", { text: "late" }, "rc1~k3~late-id~1~0~0");
    expect(codeOf(late as Msg)).toBe("TIMEOUT");
    expect(runs.length).toBe(before);
  });

  it("sends progress messages to a call token that asks for them (a window above 0)", async () => {
    const release = deferred();
    gates.set("slow-1", release.promise);
    const got = await rawCall("billing.echo", { text: "slow-1" }, "rc1~k4~slow-id-1~1~5000~100", {
      count: 2,
      // The first progress message proves the call is held: let it finish.
      onMessage: (m) => {
        if (m.headers?.get(HEADER_PROGRESS)) release.resolve();
      },
    });
    expect(got[0]?.headers?.get(HEADER_PROGRESS)).toBe(responder.id);
    expect(got[0]?.data.length).toBe(0);
    expect(got[1]?.headers).toBeUndefined();
    expect(parse((got[1] as Msg).data)).toEqual({ text: "slow-1" });
  });

  it("lets headers win: with any of ricochet's headers, the call token is not read", async () => {
    const h = natsHeaders();
    h.set("Nats-Msg-Id", "header-id-1");
    // The token says another id and a spent budget; the headers say this id and no budget (default).
    const [reply] = await rawCall("billing.echo", { text: "hdr-1" }, "rc1~k5~token-id-1~7~0~0", {
      headers: h,
    });
    expect(codeOf(reply as Msg)).toBe("OK");
    expect(runs.filter((r) => r.text === "hdr-1")).toMatchObject([
      { id: "header-id-1", attempt: 1 },
    ]);
    // Even a malformed token is not read beside a header.
    const t = natsHeaders();
    t.set("Ricochet-Timeout", "2000");
    const [served] = await rawCall("billing.echo", { text: "hdr-2" }, "rc1~k6~bad.id", {
      headers: t,
    });
    expect(codeOf(served as Msg)).toBe("OK");
  });

  it("answers a malformed call token with INVALID_REQUEST naming the rule, without running the handler", async () => {
    const before = runs.length;
    const cases: Array<[string, RegExp]> = [
      ["rc2~k~id~1~5000~0", /version 2/],
      ["rc1~k~id~0~5000~0", /attempt/],
      ["rc1~k~id~1~1e3~0", /budget/],
      ["rc1~k~id~1~5000", /five fields/],
      [`rc1~k~${"x".repeat(65)}~1~5000~0`, /call id/],
      ["rc1~k~id~1~5000~-1", /window/],
    ];
    for (const [token, rule] of cases) {
      const [reply] = await rawCall("billing.echo", { text: "never" }, token);
      const body = parse((reply as Msg).data);
      expect(body.code, token).toBe("INVALID_REQUEST");
      expect((body.details as { reply: string }).reply, token).toMatch(rule);
    }
    expect(runs.length).toBe(before);
    // A plain inbox that merely looks like one is a plain request.
    const [plain] = await rawCall("billing.echo", { text: "plain-1" }, "rc~1");
    expect(codeOf(plain as Msg)).toBe("OK");
  });

  it("falls back to headers for an id that is not token-safe, for the caller's own headers, and with wire: headers", async () => {
    const requests = await watch("billing.echo");
    const client = createClient(billing, { transport: natsTransport(clientNc) });
    const verbose = createClient(billing, { transport: natsTransport(clientNc), wire: "headers" });
    try {
      await client.echo({ text: "fb-1" }, { id: "order-42/inventory.reserve/1" });
      await client.echo({ text: "fb-2" }, { id: "fb-id-2", headers: { "X-Tenant": "t1" } });
      await verbose.echo({ text: "fb-3" }, { id: "fb-id-3" });
      await requests.nth(3);
    } finally {
      requests.stop();
      await Promise.all([client.close(), verbose.close()]);
    }
    const ids = requests.seen.map((m) => m.headers?.get("Nats-Msg-Id"));
    expect(ids).toEqual(["order-42/inventory.reserve/1", "fb-id-2", "fb-id-3"]);
    for (const m of requests.seen) {
      expect(m.headers?.get("Ricochet-Timeout")).toMatch(/^\d+$/);
      expect(m.reply).toMatch(/^_INBOX\.[^.]+\.[0-9a-z]+$/);
      expect(parseCallToken(m.reply ?? "")).toBeUndefined();
    }
    expect(requests.seen[1]?.headers?.get("X-Tenant")).toBe("t1");
    expect(runs.filter((r) => r.text.startsWith("fb-")).map((r) => r.id)).toEqual([
      "order-42/inventory.reserve/1",
      "fb-id-2",
      "fb-id-3",
    ]);
  });
});
