/**
 * Durable calls over JetStream on a real nats-server: stored while no responder runs, redelivered after
 * a responder dies, dead-lettered when poison or exhausted, stored once per call id.
 */
import { type JetStreamManager, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { type KV, Kvm } from "@nats-io/kv";
import { type NatsConnection, headers as natsHeaders } from "@nats-io/nats-core";
import { connect } from "@nats-io/transport-node";
import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, inject, it } from "vitest";
import { z } from "zod";
import { createClient } from "../../src/client.js";
import { defineContract, method } from "../../src/contract.js";
import { kvDedupe } from "../../src/dedupe/kv.js";
import { createMetrics } from "../../src/metrics.js";
import { createResponder, type Handlers, type ResponderOptions } from "../../src/responder.js";
import { deadLetters } from "../../src/transport/dead-letters.js";
import { jetstreamQueue, streamNames } from "../../src/transport/jetstream.js";
import { natsTransport } from "../../src/transport/nats.js";
import type { DurableQueue, EnqueueReceipt } from "../../src/transport/queue.js";
import { billing, billingHandlers, captureLogs, deferred, rejection } from "../fixtures/billing.js";
import { startChild } from "../support/child-process.js";

const names = streamNames(billing.service);

describe("durable calls on JetStream", () => {
  let ncs: NatsConnection[] = [];
  let jsm: JetStreamManager;
  const stops: Array<() => Promise<void>> = [];

  async function dropStreams() {
    for (const name of [names.commands, names.deadLetters]) {
      await jsm.streams.delete(name).catch(() => undefined);
    }
  }

  beforeEach(async () => {
    const servers = inject("natsUrl");
    ncs = await Promise.all([connect({ servers }), connect({ servers }), connect({ servers })]);
    jsm = await jetstreamManager(ncs[2] as NatsConnection);
    await dropStreams();
  });
  afterEach(async () => {
    for (const stop of stops.splice(0).reverse()) await stop();
    await dropStreams();
    await Promise.all(ncs.map((nc) => nc.close()));
  });

  /** A queue on connection `i` that also reports each command it stores. */
  function queueOn(i: number, options: Parameters<typeof jetstreamQueue>[1] = {}) {
    const queue = jetstreamQueue(jetstream(ncs[i] as NatsConnection), {
      ackWaitMs: 1000,
      retryDelayMs: 0,
      ...options,
    });
    const stored: EnqueueReceipt[] = [];
    let onStored = deferred<EnqueueReceipt>();
    const spy: DurableQueue = {
      maxDeliver: queue.maxDeliver,
      transientForMs: queue.transientForMs,
      retryDelayMs: queue.retryDelayMs,
      consumers: (service) => queue.consumers?.(service) ?? Promise.resolve("active"),
      async enqueue(...args) {
        const receipt = await queue.enqueue(...args);
        stored.push(receipt);
        onStored.resolve(receipt);
        onStored = deferred();
        return receipt;
      },
      consume: (...args) => queue.consume(...args),
    };
    return {
      queue: spy,
      stored,
      /** Resolves with the next command stored. */
      nextStored: () => onStored.promise,
    };
  }

  async function responder(
    i: number,
    handlers: Handlers<typeof billing>,
    queue: DurableQueue,
    extra: Partial<ResponderOptions> = {},
  ) {
    const nc = ncs[i] as NatsConnection;
    const r = createResponder(billing, handlers, {
      transport: natsTransport(nc),
      durable: queue,
      discovery: false,
      ...extra,
    });
    await r.start();
    stops.push(() => r.stop());
    return r;
  }

  function client(i: number, queue: DurableQueue, timeoutMs = 15_000) {
    const c = createClient(billing, {
      transport: natsTransport(ncs[i] as NatsConnection),
      timeoutMs,
      durable: { queue, methods: ["charge"] },
    });
    stops.push(() => c.close());
    return c;
  }

  /** Counts a handler's runs. */
  function counting() {
    let runs = 0;
    const handlers: Handlers<typeof billing> = {
      ...billingHandlers,
      charge: (req, ctx) => {
        runs++;
        return { chargeId: `ch_${ctx.id}_${runs}`, balanceCents: 100 - req.amountCents };
      },
    };
    return {
      handlers,
      get runs() {
        return runs;
      },
    };
  }

  const messagesIn = async (stream: string) => (await jsm.streams.info(stream)).state.messages;

  it("a call made while no responder runs is stored, and completes once one starts", async () => {
    const { queue, nextStored } = queueOn(0);
    const c = client(0, queue);
    const call = c.charge({ accountId: "a", amountCents: 5 }, { id: "while-down-1" });
    const receipt = await nextStored();
    expect(receipt).toEqual({ duplicate: false, location: `stream ${names.commands}, seq 1` });
    expect(await messagesIn(names.commands)).toBe(1); // waiting in the stream, nobody consuming

    const count = counting();
    await responder(1, count.handlers, queueOn(1).queue);
    await expect(call).resolves.toEqual({ chargeId: "ch_while-down-1_1", balanceCents: 95 });
    expect(count.runs).toBe(1);
    // Acknowledged once answered: the work queue is empty again.
    await expect.poll(() => messagesIn(names.commands)).toBe(0);
  });

  it("a call whose deadline passes before any responder runs says the command is stored, and it still runs", async () => {
    const { queue } = queueOn(0);
    const c = client(0, queue, 300);
    const err = await rejection(c.charge({ accountId: "a", amountCents: 5 }, { id: "late-1" }));
    expect(err.code).toBe("TIMEOUT");
    expect(err.message).toContain(`stream ${names.commands}, seq 1`);
    expect(err.message).toContain("call again with id 'late-1'");
    // Nothing has consumed billing's commands yet: the TIMEOUT says so, and what to do.
    expect(err.message).toMatch(
      /no responder has ever consumed durable commands of billing: start one with the durable option/,
    );

    const count = counting();
    await responder(1, count.handlers, queueOn(1).queue);
    await expect.poll(() => count.runs).toBe(1);
    // Calling again with the id gets the result: the duplicate store is answered from dedupe.
    const again = client(2, queueOn(2).queue);
    await expect(
      again.charge({ accountId: "a", amountCents: 5 }, { id: "late-1" }),
    ).resolves.toEqual({ chargeId: "ch_late-1_1", balanceCents: 95 });
    expect(count.runs).toBe(1);
  });

  it("the same id published twice is stored once, and both callers get the one result", async () => {
    const count = counting();
    await responder(1, count.handlers, queueOn(1).queue);
    const first = queueOn(0);
    const second = queueOn(2);
    const input = { accountId: "a", amountCents: 7 };
    const a = await client(0, first.queue).charge(input, { id: "twice-1" });
    const b = await client(2, second.queue).charge(input, { id: "twice-1" });
    expect(b).toEqual(a);
    expect(first.stored).toEqual([
      { duplicate: false, location: `stream ${names.commands}, seq 1` },
    ]);
    expect(second.stored).toEqual([
      { duplicate: true, location: `stream ${names.commands}, seq 1` },
    ]);
    expect((await jsm.streams.info(names.commands)).state.last_seq).toBe(1);
    expect(count.runs).toBe(1);

    // A raw publisher's duplicate is refused by the stream's window just the same.
    const js = jetstream(ncs[2] as NatsConnection);
    const h = natsHeaders();
    h.set("Nats-Msg-Id", "twice-1");
    const raw = await js.publish("ricochet.durable.billing.charge", JSON.stringify(input), {
      headers: h,
    });
    expect(raw.duplicate).toBe(true);
    expect((await jsm.streams.info(names.commands)).state.last_seq).toBe(1);
  });

  it("a poison command goes to the dead-letter subject with its headers and error; its caller is told", async () => {
    const count = counting();
    await responder(1, count.handlers, queueOn(1).queue);
    const raw = ncs[2] as NatsConnection;
    const js = jetstream(raw);
    const inbox = `_INBOX.durable-poison.${Date.now()}`;
    const replies: Array<{ code: string; body: Record<string, unknown> }> = [];
    const both = deferred();
    raw.subscribe(inbox, {
      callback: (_err, m) => {
        replies.push({
          code: m.headers?.get("Nats-Service-Error-Code") ?? "",
          body: m.json<Record<string, unknown>>(),
        });
        if (replies.length === 2) both.resolve();
      },
    });
    await raw.flush();
    const send = (id: string, body: string) => {
      const h = natsHeaders();
      h.set("Nats-Msg-Id", id);
      h.set("Ricochet-Reply", inbox);
      h.set("X-Tenant", "t1");
      return js.publish("ricochet.durable.billing.charge", body, { headers: h });
    };
    await send("poison-json", "{not json");
    await send("poison-schema", JSON.stringify({ accountId: "", amountCents: -1 }));
    await both.promise;

    expect(replies.map((r) => [r.code, r.body.code])).toEqual([
      ["400", "INVALID_REQUEST"],
      ["400", "INVALID_REQUEST"],
    ]);
    expect(replies[0]?.body.details).toMatchObject({
      deadLetter: "ricochet.dead.billing.charge",
      reason: expect.any(String),
    });
    expect(replies[1]?.body.details).toMatchObject({
      deadLetter: "ricochet.dead.billing.charge",
      issues: expect.any(Array),
    });
    expect(count.runs).toBe(0);
    expect(await messagesIn(names.deadLetters)).toBe(2);
    const dead = await jsm.streams.getMessage(names.deadLetters, { seq: 1 });
    expect(new TextDecoder().decode(dead?.data)).toBe("{not json"); // the original bytes
    expect(dead?.header.get("Ricochet-Call-Id")).toBe("poison-json");
    expect(dead?.header.get("Nats-Msg-Id")).toBe(`${names.commands}:1`); // dedupes this command only
    expect(dead?.header.get("X-Tenant")).toBe("t1");
    expect(dead?.header.get("Ricochet-Reply")).toBe(inbox);
    expect(dead?.header.get("Ricochet-Dead-Code")).toBe("INVALID_REQUEST");
    expect(dead?.header.get("Ricochet-Dead-Reason")).toContain("not valid JSON");
    expect(dead?.header.get("Ricochet-Deliveries")).toBe("1");
    await expect.poll(() => messagesIn(names.commands)).toBe(0);
  });

  it("a command failing on every delivery is dead-lettered after maxDeliver, and its caller gets DEAD_LETTERED", async () => {
    let runs = 0;
    const metrics = createMetrics();
    await responder(
      1,
      {
        ...billingHandlers,
        charge: () => {
          runs++;
          throw new Error(`database down (run ${runs})`);
        },
      },
      queueOn(1, { maxDeliver: 3 }).queue,
      metrics.responder,
    );
    const c = client(0, queueOn(0, { maxDeliver: 3 }).queue);
    const err = await rejection(c.charge({ accountId: "a", amountCents: 5 }, { id: "doomed-1" }));
    // Named by the contract, not by the queue's subject; redeliveries and the dead letter counted.
    expect(err.subject).toBe("billing.charge");
    expect(err.message).toMatch(/^billing\.charge failed on all 3 deliveries/);
    const snap = metrics.snapshot().responder;
    expect(Object.keys(snap)).toEqual(["billing.charge"]);
    expect(snap["billing.charge"]?.durable).toEqual({
      redelivered: 2,
      retried: 0,
      deadLettered: 1,
    });
    expect(err.code).toBe("DEAD_LETTERED");
    expect(err.details).toEqual({
      deadLetter: "ricochet.dead.billing.charge",
      deliveries: 3,
      lastCode: "INTERNAL",
    });
    expect(err.message).toContain("failed on all 3 deliveries");
    expect(runs).toBe(3);
    const dead = await jsm.streams.getMessage(names.deadLetters, { seq: 1 });
    expect(dead?.header.get("Ricochet-Call-Id")).toBe("doomed-1");
    expect(dead?.header.get("Ricochet-Dead-Code")).toBe("INTERNAL");
    expect(dead?.header.get("Ricochet-Deliveries")).toBe("3");
    await expect.poll(() => messagesIn(names.commands)).toBe(0);
  });

  it("a command whose dependency is down is tried again here without spending deliveries, and completes once it is back", async () => {
    // maxDeliver 1: had the outage counted, the first failure would have dead-lettered the command.
    const inventory = defineContract({
      service: "inventory",
      version: "1.0.0",
      methods: {
        reserve: method({ request: z.object({ n: z.number() }), response: z.object({}) }),
      },
    });
    const stock = createResponder(
      inventory,
      { reserve: () => ({}) },
      {
        transport: natsTransport(ncs[2] as NatsConnection),
        discovery: false,
      },
    );
    stops.push(() => stock.stop());
    const downstream = createClient(inventory, {
      transport: natsTransport(ncs[1] as NatsConnection),
      retry: { attempts: 1 }, // the outage reaches the handler at once
    });
    stops.push(() => downstream.close());
    const tries: number[] = [];
    const metrics = createMetrics();
    await responder(
      1,
      {
        ...billingHandlers,
        charge: async (req, ctx) => {
          tries.push(ctx.attempt);
          if (tries.length === 3) await stock.start(); // inventory comes back
          await downstream.reserve({ n: req.amountCents });
          return { chargeId: `ch_${ctx.id}`, balanceCents: 100 - req.amountCents };
        },
      },
      queueOn(1, { maxDeliver: 1, retryDelayMs: 20 }).queue,
      metrics.responder,
    );
    const c = client(0, queueOn(0, { maxDeliver: 1 }).queue);
    await expect(c.charge({ accountId: "a", amountCents: 5 }, { id: "outage-1" })).resolves.toEqual(
      {
        chargeId: "ch_outage-1",
        balanceCents: 95,
      },
    );
    expect(tries).toEqual([1, 1, 1]); // three tries, all within the first delivery
    expect(metrics.snapshot().responder["billing.charge"]?.durable).toEqual({
      redelivered: 0,
      retried: 2,
      deadLettered: 0,
    });
    await expect.poll(() => messagesIn(names.commands)).toBe(0);
    expect(await messagesIn(names.deadLetters)).toBe(0);
  });

  it("ctx.retryLater() past transientForMs dead-letters the command, saying why", async () => {
    let tries = 0;
    await responder(
      1,
      {
        ...billingHandlers,
        charge: (_req, ctx) => {
          tries++;
          throw ctx.retryLater("the ledger is closed for the night");
        },
      },
      queueOn(1, { maxDeliver: 1, retryDelayMs: 20, transientForMs: 400 }).queue,
    );
    const c = client(0, queueOn(0).queue);
    const err = await rejection(c.charge({ accountId: "a", amountCents: 5 }, { id: "night-1" }));
    expect(err.code).toBe("DEAD_LETTERED");
    expect(err.message).toMatch(
      /kept failing for a transient reason .*UNAVAILABLE.*ledger is closed/,
    );
    expect(err.details).toMatchObject({ lastCode: "UNAVAILABLE", deliveries: 1 });
    expect(tries).toBeGreaterThan(2);
  });

  it("lists, inspects and replays a dead letter at any time, under its call id, so it runs once and its result is found by id", async () => {
    let broken = true;
    const seen: string[] = [];
    await responder(
      1,
      {
        ...billingHandlers,
        charge: (req, ctx) => {
          seen.push(ctx.id);
          if (broken) throw new Error("a bug, fixed later");
          return { chargeId: `ch_${ctx.id}`, balanceCents: 100 - req.amountCents };
        },
      },
      queueOn(1, { maxDeliver: 1 }).queue,
    );
    const c = client(0, queueOn(0).queue);
    const first = await rejection(c.charge({ accountId: "a", amountCents: 5 }, { id: "replay-1" }));
    expect(first.code).toBe("DEAD_LETTERED");

    const dead = deadLetters(jetstream(ncs[2] as NatsConnection), billing.service);
    const [letter, ...others] = await dead.list();
    expect(others).toEqual([]);
    expect(letter).toMatchObject({
      method: "charge",
      callId: "replay-1",
      code: "INTERNAL",
      deliveries: 1,
    });
    expect(JSON.parse(new TextDecoder().decode(letter?.data))).toMatchObject({
      accountId: "a",
      amountCents: 5,
    });
    expect(await dead.get(letter?.seq ?? 0)).toEqual(letter);

    // Fixed; replayed within the stream's 2-minute duplicate window, which still remembers the id.
    broken = false;
    const { location } = await dead.replay(letter?.seq ?? 0);
    expect(location).toMatch(/^stream RICOCHET_billing, seq \d+$/);
    expect(await dead.list()).toEqual([]);
    await expect.poll(() => seen.length).toBe(2);
    expect(seen).toEqual(["replay-1", "replay-1"]); // the same call id, for dedupe
    await expect.poll(() => messagesIn(names.commands)).toBe(0);
    // Its result is kept under the call id: asking again replays it, the handler does not run again.
    await expect(
      c.charge({ accountId: "a", amountCents: 5 }, { id: "replay-1", durable: false }),
    ).resolves.toEqual({ chargeId: "ch_replay-1", balanceCents: 95 });
    expect(seen).toHaveLength(2);
    await expect(dead.replay(letter?.seq ?? 0)).rejects.toThrow(/no dead letter/);
  });

  it("warns, naming both values, when the existing stream and consumer differ from the queue's options", async () => {
    // The stream and consumer are made with one set of options...
    await responder(1, billingHandlers, queueOn(1).queue);
    // ...and another responder comes with others: the existing ones apply, and it says so.
    const logs = captureLogs();
    await responder(
      2,
      billingHandlers,
      queueOn(2, { ackWaitMs: 4000, duplicateWindowMs: 60_000 }).queue,
      {
        logger: pino({ level: "warn" }, logs.stream),
      },
    );
    const said = logs.lines.map((l) => String(l.msg));
    expect(said).toContainEqual(
      expect.stringMatching(
        /consumer ricochet on RICOCHET_billing has an ack wait of 1000 ms, but this queue's ackWaitMs is 4000/,
      ),
    );
    expect(said).toContainEqual(
      expect.stringMatching(
        /stream RICOCHET_billing has a duplicate window of 120000 ms, but this queue's duplicateWindowMs is 60000/,
      ),
    );
  });

  it("keeps a command whose handler outlasts the ack wait from being redelivered", async () => {
    let runs = 0;
    const started = deferred();
    const gate = deferred();
    await responder(
      1,
      {
        ...billingHandlers,
        charge: async (req) => {
          runs++;
          started.resolve();
          await gate.promise;
          return { chargeId: "ch_slow", balanceCents: 100 - req.amountCents };
        },
      },
      queueOn(1).queue, // ack wait 1 s
    );
    const c = client(0, queueOn(0).queue);
    const call = c.charge({ accountId: "a", amountCents: 5 }, { id: "slow-1" });
    await started.promise;
    // A redelivery that does not happen has no event to await: wait out 2.5 ack waits.
    await new Promise((resolve) => setTimeout(resolve, 2500));
    const info = await jsm.consumers.info(names.commands, "ricochet");
    expect(info.num_redelivered).toBe(0);
    expect(info.num_ack_pending).toBe(1);
    gate.resolve();
    await expect(call).resolves.toEqual({ chargeId: "ch_slow", balanceCents: 95 });
    expect(runs).toBe(1);
  });

  it("with manage: false, says which stream is missing instead of creating it", async () => {
    const c = createClient(billing, {
      transport: natsTransport(ncs[0] as NatsConnection),
      retry: { attempts: 2, baseMs: 1, maxMs: 1 },
      durable: { queue: jetstreamQueue(jetstream(ncs[0] as NatsConnection), { manage: false }) },
    });
    stops.push(() => c.close());
    const err = await rejection(c.charge({ accountId: "a", amountCents: 1 }, { durable: true }));
    expect(err.code).toBe("UNAVAILABLE");
    expect(err.message).toContain(
      `no JetStream stream captures ricochet.durable.billing.charge; create stream ${names.commands}`,
    );
    const r = createResponder(billing, billingHandlers, {
      transport: natsTransport(ncs[1] as NatsConnection),
      durable: jetstreamQueue(jetstream(ncs[1] as NatsConnection), { manage: false }),
      discovery: false,
    });
    await expect(r.start()).rejects.toThrow(
      `stream ${names.commands} does not exist and manage is false`,
    );
    await expect(jsm.streams.info(names.commands)).rejects.toThrow();
    // A failed start leaves nothing serving, and stop() still resolves.
    const core = createClient(billing, {
      transport: natsTransport(ncs[0] as NatsConnection),
      retry: { attempts: 1 },
    });
    stops.push(() => core.close());
    expect((await rejection(core.echo({ text: "x" }))).code).toBe("NO_RESPONDERS");
    await r.stop();
  });

  it("does not redeliver a command whose handler returned, even a value the contract refuses", async () => {
    let runs = 0;
    await responder(
      1,
      {
        ...billingHandlers,
        charge: () => {
          runs++;
          return { chargeId: 42 } as unknown as { chargeId: string; balanceCents: number };
        },
      },
      queueOn(1).queue,
    );
    const c = client(0, queueOn(0).queue);
    const err = await rejection(
      c.charge({ accountId: "a", amountCents: 5 }, { id: "bad-value-1" }),
    );
    expect(err.code).toBe("INTERNAL");
    await expect.poll(() => messagesIn(names.commands)).toBe(0);
    expect(runs).toBe(1);
    expect(await messagesIn(names.deadLetters)).toBe(0);
  });

  describe("with kvDedupe, across a SIGKILL", () => {
    let kv: KV;
    let bucket: string;
    beforeEach(async () => {
      bucket = `ricochet_durable_${Date.now().toString(36)}`;
      kv = await new Kvm(ncs[2] as NatsConnection).create(bucket, { ttl: 60_000, history: 1 });
    });
    afterEach(async () => {
      await kv.destroy();
    });

    /** Watches `effects.<what>.<id>` and collects who reported them. */
    function watchEffects(id: string) {
      const observer = ncs[2] as NatsConnection;
      const seen: Record<string, string[]> = { started: [], done: [], acking: [] };
      const first: Record<string, ReturnType<typeof deferred<string>>> = {
        started: deferred<string>(),
        done: deferred<string>(),
        acking: deferred<string>(),
      };
      for (const what of Object.keys(seen)) {
        observer.subscribe(`effects.${what}.${id}`, {
          callback: (_e, m) => {
            seen[what]?.push(m.string());
            first[what]?.resolve(m.string());
          },
        });
      }
      return { seen, first, flush: () => observer.flush() };
    }

    /** A survivor in this process, on the same bucket, whose handler reports its effect. */
    async function survivor() {
      let runs = 0;
      const nc = ncs[1] as NatsConnection;
      const store = kvDedupe(await new Kvm(nc).open(bucket), { ttlMs: 60_000, leaseMs: 500 });
      stops.push(async () => store.close());
      const r = createResponder(
        billing,
        {
          ...billingHandlers,
          charge: (req, ctx) => {
            runs++;
            nc.publish(`effects.done.${ctx.id}`, "survivor");
            return { chargeId: "ch_survivor", balanceCents: 100 - req.amountCents };
          },
        },
        {
          transport: natsTransport(nc),
          durable: queueOn(1).queue,
          dedupe: store,
          discovery: false,
        },
      );
      await r.start();
      stops.push(() => r.stop());
      return {
        get runs() {
          return runs;
        },
      };
    }

    it("a responder killed mid-handler: the command is redelivered to another, which runs it once", async () => {
      const effects = watchEffects("crash-1");
      await effects.flush();
      const child = await startChild("test/support/durable-responder-process.ts", [
        inject("natsUrl"),
        bucket,
        "handler",
      ]);
      stops.push(() => child.kill());
      const c = client(0, queueOn(0).queue);
      const call = c.charge({ accountId: "a", amountCents: 5 }, { id: "crash-1" });
      expect(await effects.first.started?.promise).toBe(String(child.pid));
      await child.kill(); // mid-handler, holding the command and the dedupe claim

      const s = await survivor();
      await expect(call).resolves.toEqual({ chargeId: "ch_survivor", balanceCents: 95 });
      await effects.flush();
      expect(effects.seen.done).toEqual(["survivor"]);
      expect(s.runs).toBe(1);
      await expect.poll(() => messagesIn(names.commands)).toBe(0);
    });

    it("a responder killed after its handler finished but before its ack: the redelivery replays, the effect stays once", async () => {
      const effects = watchEffects("crash-2");
      await effects.flush();
      const child = await startChild("test/support/durable-responder-process.ts", [
        inject("natsUrl"),
        bucket,
        "ack",
      ]);
      stops.push(() => child.kill());
      const c = client(0, queueOn(0).queue);
      const result = await c.charge({ accountId: "a", amountCents: 5 }, { id: "crash-2" });
      expect(result).toEqual({ chargeId: `ch_${child.pid}`, balanceCents: 95 });
      await effects.first.acking?.promise; // answered, about to ack: killed right there
      await child.kill();
      expect(await messagesIn(names.commands)).toBe(1); // never acknowledged

      const s = await survivor();
      await expect.poll(() => messagesIn(names.commands), { timeout: 10_000 }).toBe(0);
      await effects.flush();
      expect(effects.seen.done).toEqual([String(child.pid)]); // the effect happened once
      expect(s.runs).toBe(0); // the redelivery was answered from the dedupe store
    });
  });
});
