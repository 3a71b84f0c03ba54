/**
 * Calls made from a handler with `{ parent: ctx }` get ids derived from the parent's call id and
 * their place in the handler, so a parent that runs again with the same id repeats its children's
 * ids and deduplicating children do not run twice.
 */
import { afterEach, describe, expect, it } from "vitest";
import { z } from "zod";
import {
  type AnyContract,
  type CallContext,
  type Client,
  type ClientMiddleware,
  type ClientOptions,
  createClient,
  createResponder,
  defineContract,
  type Handlers,
  type MemoryTransport,
  memoryTransport,
  method,
  type ResponderOptions,
} from "../../src/index.js";

/** The child service: each reply names the call id it ran under and how many runs came before. */
const inventory = defineContract({
  service: "inventory",
  version: "1.0.0",
  methods: {
    reserve: method({
      request: z.object({ sku: z.string() }),
      response: z.object({ callId: z.string(), run: z.number() }),
    }),
    release: method({
      request: z.object({ sku: z.string() }),
      response: z.object({ callId: z.string(), run: z.number() }),
    }),
  },
});

/** The parent service, whose handler makes the child calls. */
const orders = defineContract({
  service: "orders",
  version: "1.0.0",
  methods: {
    place: method({
      request: z.object({ orderId: z.string() }),
      response: z.object({ children: z.array(z.object({ callId: z.string(), run: z.number() })) }),
    }),
  },
});

type Child = { callId: string; run: number };
type ChildClient = Client<typeof inventory>;

const NANOID = /^[A-Za-z0-9_-]{21}$/;

describe("ids of nested calls ({ parent: ctx })", () => {
  let t: MemoryTransport;
  const cleanup: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c();
    await t?.close();
  });

  const serve = async <C extends AnyContract>(
    contract: C,
    handlers: Handlers<C>,
    opts: Partial<ResponderOptions> = {},
  ) => {
    const r = createResponder(contract, handlers, { transport: t, ...opts });
    await r.start();
    cleanup.push(() => r.stop());
  };
  const client = <C extends AnyContract>(contract: C, opts: Partial<ClientOptions<C>> = {}) => {
    const c = createClient(contract, { transport: t, ...opts });
    cleanup.push(() => c.close());
    return c;
  };

  /**
   * An inventory responder (default memoryDedupe) that counts the runs of its handlers per call id,
   * and a client for it.
   */
  const inventoryService = async (clientOpts: Partial<ClientOptions<typeof inventory>> = {}) => {
    const runs = new Map<string, number>();
    let total = 0;
    const run = (ctx: CallContext): Child => {
      runs.set(ctx.id, (runs.get(ctx.id) ?? 0) + 1);
      return { callId: ctx.id, run: ++total };
    };
    await serve(inventory, { reserve: (_req, ctx) => run(ctx), release: (_req, ctx) => run(ctx) });
    return { runs, children: client(inventory, clientOpts) };
  };

  /** An orders responder without dedupe, so one id runs its handler as often as it is called. */
  const ordersService = async (
    place: (children: ChildClient, ctx: CallContext) => Promise<Child[]>,
    children: ChildClient,
  ) => {
    let parentRuns = 0;
    await serve(
      orders,
      {
        place: async (_req, ctx) => {
          parentRuns++;
          return { children: await place(children, ctx) };
        },
      },
      { dedupe: false },
    );
    return { parents: client(orders), parentRuns: () => parentRuns };
  };

  it("runs each child of a parent that runs twice with the same id once, and both parent calls get the same child results", async () => {
    t = memoryTransport();
    const { runs, children } = await inventoryService();
    const { parents, parentRuns } = await ordersService(
      async (c, ctx) => [
        await c.reserve({ sku: "a" }, { parent: ctx }),
        await c.reserve({ sku: "b" }, { parent: ctx }),
        await c.release({ sku: "a" }, { parent: ctx }),
      ],
      children,
    );

    const first = await parents.place({ orderId: "42" }, { id: "order-42" });
    const second = await parents.place({ orderId: "42" }, { id: "order-42" });

    expect(parentRuns()).toBe(2);
    expect(second).toEqual(first);
    expect(first.children).toEqual([
      { callId: "order-42/inventory.reserve/1", run: 1 },
      { callId: "order-42/inventory.reserve/2", run: 2 },
      { callId: "order-42/inventory.release/1", run: 3 },
    ]);
    expect(Object.fromEntries(runs)).toEqual({
      "order-42/inventory.reserve/1": 1,
      "order-42/inventory.reserve/2": 1,
      "order-42/inventory.release/1": 1,
    });
  });

  it("numbers calls to one method /1, /2, /3 in the order the handler makes them, and counts each method apart", async () => {
    t = memoryTransport();
    const { children } = await inventoryService();
    const { parents } = await ordersService(async (c, ctx) => {
      // Started together: the place is the order the calls are made in, not the order they finish.
      const together = await Promise.all([
        c.reserve({ sku: "a" }, { parent: ctx }),
        c.reserve({ sku: "b" }, { parent: ctx }),
      ]);
      const released = await c.release({ sku: "a" }, { parent: ctx });
      const third = await c.reserve({ sku: "c" }, { parent: ctx });
      return [...together, released, third];
    }, children);

    const out = await parents.place({ orderId: "7" }, { id: "order-7" });
    expect(out.children.map((c) => c.callId)).toEqual([
      "order-7/inventory.reserve/1",
      "order-7/inventory.reserve/2",
      "order-7/inventory.release/1",
      "order-7/inventory.reserve/3",
    ]);

    // Another execution (another parent id) counts from 1 again.
    const other = await parents.place({ orderId: "8" }, { id: "order-8" });
    expect(other.children.map((c) => c.callId)).toEqual([
      "order-8/inventory.reserve/1",
      "order-8/inventory.reserve/2",
      "order-8/inventory.release/1",
      "order-8/inventory.reserve/3",
    ]);
  });

  it("lets an explicit id override the derived one (the call still takes its place in the count)", async () => {
    t = memoryTransport();
    const { children } = await inventoryService();
    const { parents } = await ordersService(
      async (c, ctx) => [
        await c.reserve({ sku: "a" }, { parent: ctx, id: "reservation-a" }),
        await c.reserve({ sku: "b" }, { parent: ctx }),
      ],
      children,
    );

    const out = await parents.place({ orderId: "9" }, { id: "order-9" });
    expect(out.children.map((c) => c.callId)).toEqual([
      "reservation-a",
      "order-9/inventory.reserve/2",
    ]);
  });

  it("gives a call whose parent is a plain { deadline, signal } object a new nanoid", async () => {
    t = memoryTransport();
    const { children } = await inventoryService();
    const { parents } = await ordersService(async (c, ctx) => {
      // The handler's deadline and signal, but not the handler's context: nothing to derive from.
      const plain = { deadline: ctx.deadline, signal: ctx.signal };
      return [
        await c.reserve({ sku: "a" }, { parent: plain }),
        await c.reserve({ sku: "a" }, { parent: plain }),
      ];
    }, children);

    const out = await parents.place({ orderId: "10" }, { id: "order-10" });
    const [a, b] = out.children.map((c) => c.callId);
    expect(a).toMatch(NANOID);
    expect(b).toMatch(NANOID);
    expect(a).not.toBe(b);

    // Outside any handler too.
    const controller = new AbortController();
    const direct = await children.reserve(
      { sku: "z" },
      { parent: { deadline: Date.now() + 5_000, signal: controller.signal } },
    );
    expect(direct.callId).toMatch(NANOID);
  });

  it("derives the same ids through client middleware, which sees them in call.id, counting each call once", async () => {
    t = memoryTransport();
    const seen: string[] = [];
    const record: ClientMiddleware = (call, next) => {
      seen.push(call.id);
      return next();
    };
    const { runs, children } = await inventoryService({ use: [record] });
    const { parents } = await ordersService(
      async (c, ctx) => [
        await c.reserve({ sku: "a" }, { parent: ctx }),
        await c.reserve({ sku: "b" }, { parent: ctx }),
        await c.release({ sku: "a" }, { parent: ctx }),
      ],
      children,
    );

    const first = await parents.place({ orderId: "42" }, { id: "order-42" });
    const second = await parents.place({ orderId: "42" }, { id: "order-42" });

    const ids = [
      "order-42/inventory.reserve/1",
      "order-42/inventory.reserve/2",
      "order-42/inventory.release/1",
    ];
    expect(seen).toEqual([...ids, ...ids]);
    expect(first.children.map((c) => c.callId)).toEqual(ids);
    expect(second).toEqual(first);
    expect([...runs.values()]).toEqual([1, 1, 1]);
  });
});
