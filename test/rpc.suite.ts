/**
 * The RPC behaviour suite: client and responder end to end, run on every transport (memory in
 * test/unit, NATS in test/integration), so both give callers the same outcomes.
 */
import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { z } from "zod";
import { type CallOptions, createClient } from "../src/client.js";
import { defineContract, method } from "../src/contract.js";
import { encodeBody } from "../src/protocol.js";
import {
  createResponder,
  type Handlers,
  type Responder,
  type ResponderOptions,
} from "../src/responder.js";
import {
  billing,
  billingHandlers,
  captureLogs,
  deferred,
  gatedEcho,
  rejection,
} from "./fixtures/billing.js";
import type { TransportPair } from "./transport.suite.js";

const once: CallOptions = { retry: { attempts: 1 } };

export function rpcSuite(name: string, makePair: () => Promise<TransportPair>) {
  describe(`rpc behaviour: ${name}`, () => {
    let pair: TransportPair;
    const stops: Array<() => Promise<void>> = [];
    beforeEach(async () => {
      pair = await makePair();
    });
    afterEach(async () => {
      for (const stop of stops.splice(0).reverse()) await stop();
      await pair.close();
    });

    async function serve(
      handlers: Handlers<typeof billing> = billingHandlers,
      opts: Partial<ResponderOptions> = {},
    ): Promise<Responder> {
      const responder = createResponder(billing, handlers, { transport: pair.b, ...opts });
      await responder.start();
      stops.push(() => responder.stop());
      return responder;
    }
    function client(opts: Partial<Parameters<typeof createClient>[1]> = {}) {
      const c = createClient(billing, { transport: pair.a, ...opts });
      stops.push(() => c.close());
      return c;
    }

    it("returns the typed response, with the request parsed by the contract on the responder", async () => {
      let seenNote = "";
      await serve({
        ...billingHandlers,
        charge: async (req, ctx) => {
          seenNote = req.note;
          return { chargeId: `ch_${ctx.id}`, balanceCents: 100 - req.amountCents };
        },
      });
      const out = await client().charge({ accountId: "a1", amountCents: 5 }, { id: "order-42" });
      expect(out).toEqual({ chargeId: "ch_order-42", balanceCents: 95 });
      expect(seenNote).toBe("none");
    });

    it("carries a call with an empty body (z.void) and a literal response", async () => {
      await serve();
      await expect(client().ping(undefined)).resolves.toBe("pong");
    });

    it("rejects an invalid request with INVALID_REQUEST and sends nothing", async () => {
      let received = 0;
      pair.b.subscribe("billing.>", () => received++);
      await serve();
      const c = client();
      const err = await rejection(c.charge({ accountId: "", amountCents: -1 }));
      expect(err.code).toBe("INVALID_REQUEST");
      expect(err.details).toMatchObject({
        issues: [{ path: ["accountId"] }, { path: ["amountCents"] }],
      });
      await c.echo({ text: "after" }); // a real call, so the bus has delivered anything sent before it
      expect(received).toBe(1);
    });

    it("rejects with the contract's code and typed details, and does not retry a contract error", async () => {
      let runs = 0;
      await serve({
        ...billingHandlers,
        charge: async (req, ctx) => {
          runs++;
          throw ctx.fail(
            "INSUFFICIENT_FUNDS",
            { balanceCents: 7 },
            `account ${req.accountId} has 7 cents`,
          );
        },
      });
      const err = await rejection(
        client().charge({ accountId: "a1", amountCents: 500 }, { id: "c-1" }),
      );
      expect(err).toMatchObject({
        code: "INSUFFICIENT_FUNDS",
        details: { balanceCents: 7 },
        status: 400,
        callId: "c-1",
      });
      expect(err.message).toBe("account a1 has 7 cents");
      expect(runs).toBe(1);
    });

    it("hides an unexpected handler failure behind INTERNAL, and gives the reply and the log line one error id", async () => {
      const logs = captureLogs();
      await serve(
        {
          ...billingHandlers,
          charge: () => {
            throw new Error("db password is hunter2");
          },
        },
        { logger: pino({ level: "debug" }, logs.stream) },
      );
      const err = await rejection(
        client().charge({ accountId: "a1", amountCents: 5 }, { id: "secret-call" }),
      );
      expect(err.code).toBe("INTERNAL");
      expect(err.message).not.toContain("hunter2");
      expect(err.message).not.toMatch(/at .*\.(ts|js):\d+/); // no stack
      expect(JSON.stringify(err.details ?? null)).not.toContain("hunter2");
      // One error id in the reply and in the log line, so a caller's report finds the cause.
      const errorId = (err.details as { errorId: string }).errorId;
      expect(errorId).toMatch(/^[\w-]{12}$/);
      expect(err.message).toContain(errorId);
      const line = logs.lines.find((l) => l.msg === "handler failed");
      expect(line).toMatchObject({
        callId: "secret-call",
        errorId,
        level: 50,
        err: { message: "db password is hunter2" },
      });
    });

    it("answers UNAVAILABLE (retryable) when a dependency is down or the handler asks to be retried later, never the downstream message", async () => {
      const nobody = defineContract({
        service: "nobody",
        version: "1.0.0",
        methods: { m: method({ request: z.object({}), response: z.object({}) }) },
      });
      const downstream = createClient(nobody, { transport: pair.b, retry: { attempts: 1 } });
      stops.push(() => downstream.close());
      await serve({
        ...billingHandlers,
        echo: async ({ text }, ctx) => {
          if (text === "later") throw ctx.retryLater("restocking until noon");
          await downstream.m({});
          return { text };
        },
      });
      const down = await rejection(client().echo({ text: "x" }, once));
      expect(down.code).toBe("UNAVAILABLE");
      expect(down.retryable).toBe(true);
      expect(down.details).toEqual({ cause: "NO_RESPONDERS" });
      expect(down.message).toMatch(/a service this call depends on is unavailable for now/);
      expect(down.message).not.toContain("nobody.m");
      const later = await rejection(client().echo({ text: "later" }, once));
      expect(later.code).toBe("UNAVAILABLE");
      expect(later.message).toContain("restocking until noon");
    });

    it("safe() settles as [undefined, value] or [error, undefined], the error typed by the method", async () => {
      await serve();
      const c = client();
      expect(await c.echo.safe({ text: "ok" })).toEqual([undefined, { text: "ok" }]);
      const [err, value] = await c.charge.safe({ accountId: "a", amountCents: 500 });
      expect(value).toBeUndefined();
      expect(err?.code).toBe("INSUFFICIENT_FUNDS");
      if (err?.code === "INSUFFICIENT_FUNDS") expect(err.details.balanceCents).toBe(100);
    });

    it("gives INTERNAL when a thrown value is not an Error, and keeps serving", async () => {
      await serve({
        ...billingHandlers,
        echo: () => {
          throw "a string";
        },
      });
      const c = client();
      expect((await rejection(c.echo({ text: "x" }))).code).toBe("INTERNAL");
      await expect(c.charge({ accountId: "a", amountCents: 1 })).resolves.toMatchObject({
        balanceCents: 99,
      });
    });

    it("answers INTERNAL when the handler's return value breaks the response schema", async () => {
      const logs = captureLogs();
      await serve(
        { ...billingHandlers, echo: () => ({ text: 42 }) as unknown as { text: string } },
        { logger: pino({ level: "debug" }, logs.stream) },
      );
      expect((await rejection(client().echo({ text: "x" }))).code).toBe("INTERNAL");
      expect(
        logs.lines.some((l) => l.msg === "handler returned a value that fails the response schema"),
      ).toBe(true);
    });

    it("answers INTERNAL when ctx.fail details break the error's schema", async () => {
      await serve({
        ...billingHandlers,
        charge: (_req, ctx) => {
          throw ctx.fail("INSUFFICIENT_FUNDS", { balanceCents: "lots" as unknown as number });
        },
      });
      expect((await rejection(client().charge({ accountId: "a", amountCents: 1 }))).code).toBe(
        "INTERNAL",
      );
    });

    it("rejects with INVALID_RESPONSE when a reply breaks the contract", async () => {
      pair.b.subscribe(
        "billing.echo",
        (m) => m.reply && pair.b.publish(m.reply, encodeBody({ text: 1 })),
      );
      await pair.b.flush();
      const err = await rejection(client().echo({ text: "x" }, once));
      expect(err.code).toBe("INVALID_RESPONSE");
      expect(err.details).toMatchObject({ issues: [{ path: ["text"] }] });
    });

    it("rejects with INVALID_RESPONSE when a reply is not JSON", async () => {
      pair.b.subscribe(
        "billing.echo",
        (m) => m.reply && pair.b.publish(m.reply, new TextEncoder().encode("{oops")),
      );
      await pair.b.flush();
      expect((await rejection(client().echo({ text: "x" }, once))).code).toBe("INVALID_RESPONSE");
    });

    it("rejects with NO_RESPONDERS at once, long before the deadline, when nobody serves the method and retries are off", async () => {
      // With a 60 s deadline, only the instant no-responders status lets this settle within the test timeout.
      const err = await rejection(client({ timeoutMs: 60_000 }).echo({ text: "x" }, once));
      expect(err.code).toBe("NO_RESPONDERS");
      expect(err.message).toMatch(/no responders for billing\.echo.*is a responder running/);
    });

    it("retries NO_RESPONDERS until the deadline without spending attempts, then rejects with NO_RESPONDERS", async () => {
      const started = Date.now();
      const err = await rejection(
        client({ retry: { attempts: 2, baseMs: 5, maxMs: 40 } }).echo(
          { text: "x" },
          { timeoutMs: 400 },
        ),
      );
      expect(err.code).toBe("NO_RESPONDERS");
      expect(err.message).toMatch(
        /no responders for billing\.echo.*still so after retrying for \d+ ms/,
      );
      // It gives up only when less than one backoff (maxMs 40) and 10 ms are left.
      expect(Date.now() - started).toBeGreaterThanOrEqual(400 - 40 - 10);
    });

    it("rejects with TIMEOUT at the deadline and aborts the handler's ctx.signal", async () => {
      const aborted = deferred<unknown>();
      await serve({
        ...billingHandlers,
        echo: (_req, ctx) =>
          new Promise((_, reject) => {
            ctx.signal.addEventListener("abort", () => {
              aborted.resolve(ctx.signal.reason);
              reject(ctx.signal.reason);
            });
          }),
      });
      const err = await rejection(client().echo({ text: "slow" }, { timeoutMs: 150, ...once }));
      expect(err.code).toBe("TIMEOUT");
      expect(err.message).toMatch(/billing\.echo timed out after \d+ ms \(call .+, 1 attempt\)/);
      expect(await aborted.promise).toMatchObject({ code: "TIMEOUT" });
    });

    it("rejects with CANCELLED when the caller aborts, and sends nothing when already aborted", async () => {
      const held = gatedEcho();
      await serve({ ...billingHandlers, echo: held.echo });
      const c = client();
      const controller = new AbortController();
      const call = c.echo({ text: "x" }, { signal: controller.signal });
      await held.started;
      controller.abort(new Error("user left"));
      const err = await rejection(call);
      expect(err.code).toBe("CANCELLED");
      expect((err.cause as Error).message).toBe("user left");
      held.open();
      expect((await rejection(c.echo({ text: "y" }, { signal: AbortSignal.abort() }))).code).toBe(
        "CANCELLED",
      );
    });

    it("gives the handler its context: id, attempt, deadline, headers and a logger", async () => {
      const seen = deferred<Record<string, unknown>>();
      await serve({
        ...billingHandlers,
        echo: ({ text }, ctx) => {
          seen.resolve({
            id: ctx.id,
            attempt: ctx.attempt,
            deadlineLeft: ctx.deadline - Date.now(),
            header: ctx.headers["Nats-Msg-Id"],
            custom: ctx.headers["X-Tenant"],
            method: ctx.method,
            subject: ctx.subject,
            logs: typeof ctx.logger.info,
          });
          return { text };
        },
      });
      await client().echo(
        { text: "x" },
        { id: "id-7", timeoutMs: 3000, headers: { "X-Tenant": "t1" } },
      );
      const ctx = await seen.promise;
      expect(ctx).toMatchObject({
        id: "id-7",
        attempt: 1,
        header: "id-7",
        custom: "t1",
        method: "echo",
        subject: "billing.echo",
        logs: "function",
      });
      expect(ctx.deadlineLeft).toBeGreaterThan(0);
      expect(ctx.deadlineLeft).toBeLessThanOrEqual(3000);
    });

    it("runs at most `concurrency` handlers at once and queues the rest", async () => {
      let running = 0;
      let peak = 0;
      const gate = deferred();
      const reached = deferred();
      await serve(
        {
          ...billingHandlers,
          echo: async ({ text }) => {
            peak = Math.max(peak, ++running);
            if (running === 2) reached.resolve();
            await gate.promise;
            running--;
            return { text };
          },
        },
        { concurrency: 2 },
      );
      const c = client();
      const calls = Array.from({ length: 6 }, (_, i) => c.echo({ text: String(i) }));
      await reached.promise;
      gate.resolve();
      expect((await Promise.all(calls)).map((r) => r.text)).toEqual(["0", "1", "2", "3", "4", "5"]);
      expect(peak).toBe(2);
    });

    it("refuses calls past concurrency + maxQueue with OVERLOADED", async () => {
      const held = gatedEcho();
      await serve({ ...billingHandlers, echo: held.echo }, { concurrency: 1, maxQueue: 0 });
      const c = client();
      const first = c.echo({ text: "1" });
      await held.started;
      const err = await rejection(c.echo({ text: "2" }, once));
      expect(err.code).toBe("OVERLOADED");
      expect(err.retryable).toBe(true);
      held.open();
      await expect(first).resolves.toEqual({ text: "1" });
    });

    it("stop() drains: the call in flight finishes and replies, and new calls find no responders", async () => {
      const held = gatedEcho();
      const draining = deferred();
      const responder = await serve(
        { ...billingHandlers, echo: held.echo },
        {
          logger: pino(
            { level: "info" },
            {
              write: (line: string) => {
                if (line.includes('"msg":"draining: no new calls')) draining.resolve();
              },
            },
          ),
        },
      );
      const c = client();
      const inFlight = c.echo({ text: "in flight" });
      await held.started;
      let stopped = false;
      const stopping = responder.stop().then(() => {
        stopped = true;
      });
      // A call that reaches the bus before the unsubscribe does is still served (nothing is lost);
      // wait until the responder says it has stopped taking new calls.
      await draining.promise;
      expect(responder.inFlight).toBe(1);
      const refused = await rejection(c.echo({ text: "new" }, once));
      expect(refused.code).toBe("NO_RESPONDERS");
      expect(stopped).toBe(false);
      held.open();
      await expect(inFlight).resolves.toEqual({ text: "in flight" });
      await stopping;
      expect(held.runs).toBe(1);
    });

    it("stop() ends within graceMs even when a handler ignores its signal: it aborts ctx.signal and answers the running and queued calls UNAVAILABLE", async () => {
      const started = deferred();
      let aborted: unknown;
      const responder = await serve(
        {
          ...billingHandlers,
          echo: (_req, ctx) => {
            ctx.signal.addEventListener("abort", () => {
              aborted = ctx.signal.reason;
            });
            started.resolve();
            return new Promise<never>(() => undefined); // never settles, ignores the signal
          },
        },
        { graceMs: 150, concurrency: 1 },
      );
      const c = client();
      const running = rejection(c.echo({ text: "stuck" }, { timeoutMs: 10_000, ...once }));
      await started.promise;
      const queued = rejection(c.echo({ text: "queued" }, { timeoutMs: 10_000, ...once }));
      await pair.a.flush();
      const stopping = Date.now();
      await responder.stop();
      // stop() waited for its grace period, not for the handler (which never ends) or the deadline.
      expect(Date.now() - stopping).toBeLessThan(5_000);
      for (const err of [await running, await queued]) {
        expect(err.code).toBe("UNAVAILABLE");
        expect(err.retryable).toBe(true);
        expect(err.message).toMatch(/responder stopped before this call finished.*graceMs 150/);
      }
      expect(aborted).toMatchObject({ code: "UNAVAILABLE" });
    });

    it("spreads calls over the members of a queue group", async () => {
      const byMember = [0, 0];
      for (const i of [0, 1]) {
        await serve({
          ...billingHandlers,
          echo: ({ text }) => {
            byMember[i] = (byMember[i] ?? 0) + 1;
            return { text };
          },
        });
      }
      const c = client();
      await Promise.all(Array.from({ length: 40 }, (_, i) => c.echo({ text: String(i) })));
      expect((byMember[0] ?? 0) + (byMember[1] ?? 0)).toBe(40);
      expect(byMember[0]).toBeGreaterThan(0);
      expect(byMember[1]).toBeGreaterThan(0);
    });

    it("close() settles pending calls with CANCELLED, and later calls too", async () => {
      const held = gatedEcho();
      await serve({ ...billingHandlers, echo: held.echo });
      const c = createClient(billing, { transport: pair.a });
      const call = rejection(c.echo({ text: "x" }));
      await held.started;
      await c.close();
      expect((await call).code).toBe("CANCELLED");
      expect((await rejection(c.echo({ text: "y" }))).message).toMatch(/client is closed/);
      held.open();
    });

    it("rejects a request over the bus's max payload with PAYLOAD_TOO_LARGE, nothing sent", async () => {
      await serve();
      const err = await rejection(client().echo({ text: "x".repeat(pair.a.maxPayload) }));
      expect(err.code).toBe("PAYLOAD_TOO_LARGE");
      expect(err.message).toMatch(/max_payload/);
    });
  });
}
