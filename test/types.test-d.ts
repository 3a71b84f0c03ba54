/**
 * Type tests: what the contract infers on each side, and what must not compile.
 * Run by vitest's typecheck mode (tsc), so a missing error fails the suite.
 */
import { describe, expectTypeOf, it } from "vitest";
import { z } from "zod";
import {
  type CallError,
  createClient,
  createResponder,
  defineContract,
  type InferRequest,
  type InferResponse,
  memoryTransport,
  method,
  type RpcError,
} from "../src/index.js";

const shop = defineContract({
  service: "shop",
  version: "1.0.0",
  methods: {
    order: method({
      request: z.object({ sku: z.string(), qty: z.number().int().default(1) }),
      response: z.object({ orderId: z.string(), at: z.string().transform((s) => new Date(s)) }),
      errors: { OUT_OF_STOCK: z.object({ available: z.number() }), BANNED: z.object({}) },
    }),
  },
});
const transport = memoryTransport();

describe("contract types", () => {
  it("infers the caller's input and output from the schemas", () => {
    expectTypeOf<InferRequest<typeof shop, "order">>().toEqualTypeOf<{
      sku: string;
      qty?: number | undefined;
    }>();
    expectTypeOf<InferResponse<typeof shop, "order">>().toEqualTypeOf<{
      orderId: string;
      at: Date;
    }>();
  });

  it("types the client: input type in, output type out", () => {
    const client = createClient(shop, { transport });
    expectTypeOf(client.order)
      .parameter(0)
      .toEqualTypeOf<{ sku: string; qty?: number | undefined }>();
    expectTypeOf(client.order).returns.resolves.toEqualTypeOf<{ orderId: string; at: Date }>();
    // @ts-expect-error a wrong request shape does not compile
    void client.order({ sku: 1 });
    // @ts-expect-error an unknown method does not exist
    void client.refund;
  });

  it("types handlers: output type in, input type out, errors by code", () => {
    createResponder(
      shop,
      {
        order: (req, ctx) => {
          expectTypeOf(req).toEqualTypeOf<{ sku: string; qty: number }>();
          expectTypeOf(ctx.id).toBeString();
          expectTypeOf(ctx.signal).toEqualTypeOf<AbortSignal>();
          if (req.qty > 9) throw ctx.fail("OUT_OF_STOCK", { available: 9 });
          // @ts-expect-error an unknown error code does not compile
          if (req.qty > 8) throw ctx.fail("NOPE", {});
          // @ts-expect-error details must match the error's schema
          if (req.qty > 7) throw ctx.fail("OUT_OF_STOCK", { available: "nine" });
          return { orderId: "o1", at: "2026-01-01" };
        },
      },
      { transport },
    );
    createResponder(
      shop,
      {
        // @ts-expect-error a wrong handler return type does not compile
        order: () => ({ orderId: 1, at: "x" }),
      },
      { transport },
    );
    // @ts-expect-error a missing handler does not compile
    createResponder(shop, {}, { transport });
  });

  it("narrows CallError on its code to typed details", () => {
    const err = {} as CallError<typeof shop, "order">;
    if (err.code === "OUT_OF_STOCK")
      expectTypeOf(err.details).toEqualTypeOf<{ available: number }>();
    if (err.code === "TIMEOUT")
      expectTypeOf(err).toEqualTypeOf<
        RpcError<
          | "TIMEOUT"
          | "NO_RESPONDERS"
          | "UNAVAILABLE"
          | "OVERLOADED"
          | "INVALID_REQUEST"
          | "INVALID_RESPONSE"
          | "ID_REUSED"
          | "PAYLOAD_TOO_LARGE"
          | "PERMISSION_DENIED"
          | "REPLY_DROPPED"
          | "CANCELLED"
          | "INTERNAL"
          | "DEAD_LETTERED",
          unknown
        >
      >();
  });
});

describe("inline handlers", () => {
  const status = defineContract({
    service: "status",
    version: "1.0.0",
    methods: {
      check: method({
        request: z.object({ id: z.string() }),
        response: z.object({ status: z.enum(["ok", "failed"]), code: z.literal(7) }),
      }),
      later: method({
        request: z.void(),
        response: z.object({ status: z.enum(["ok", "failed"]), tags: z.array(z.string()) }),
      }),
      plain: method({ request: z.void(), response: z.enum(["up", "down"]) }),
    },
  });

  it("are contextually typed: literal returns need no annotation or `as const`", () => {
    createResponder(
      status,
      {
        check: (req) => {
          expectTypeOf(req).toEqualTypeOf<{ id: string }>();
          return { status: "ok", code: 7 };
        },
        later: async () => ({ status: "failed", tags: ["a"] }),
        plain: () => "up",
      },
      { transport },
    );
    createResponder(
      status,
      {
        // @ts-expect-error a value outside the enum does not compile
        check: () => ({ status: "maybe", code: 7 }),
        later: () => ({ status: "ok", tags: [] }),
        // An async handler whose whole response is a bare literal needs `as const` (TypeScript widens it).
        plain: async () => "down" as const,
      },
      { transport },
    );
  });
});

describe("typed errors without casts", () => {
  it("safe() returns a pair whose error narrows on its code to typed details", async () => {
    const client = createClient(shop, { transport });
    const [err, value] = await client.order.safe({ sku: "a" });
    if (err === undefined) {
      expectTypeOf(value).toEqualTypeOf<{ orderId: string; at: Date }>();
    } else {
      expectTypeOf(value).toEqualTypeOf<undefined>();
      if (err.code === "OUT_OF_STOCK")
        expectTypeOf(err.details).toEqualTypeOf<{ available: number }>();
      // @ts-expect-error a code the method does not declare is not one of its errors
      if (err.code === "SOLD_OUT") throw err;
    }
  });
});
