/**
 * Validation goes through zod's compiled twin of each schema (`z.compile`): the same outcome as the
 * schema itself, for values that pass and for values that fail (same data, same issues), callbacks run
 * once for a value that passes, and the schema itself wherever zod cannot compile it or the
 * application turned code generation off.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import * as core from "zod/v4/core";
import { compiled, validate } from "../../src/validate.js";

const tier = z.enum(["gold", "silver", "bronze"]);
/** Schemas of the kinds contracts use: nested objects, arrays, checks, defaults, optionals, unions. */
const schemas = {
  order: z.object({
    orderId: z.string().min(1),
    customer: z.object({ id: z.string().min(1), tier }),
    note: z.string().max(20).default("none"),
    items: z.array(z.number().int().nonnegative()).max(5),
    coupon: z.string().optional(),
  }),
  lines: z.array(
    z.object({
      sku: z.string().length(3),
      qty: z.number().int().positive(),
      tags: z.array(z.string()),
    }),
  ),
  shape: z.discriminatedUnion("kind", [
    z.object({ kind: z.literal("circle"), r: z.number().positive() }),
    z.object({ kind: z.literal("square"), side: z.number().positive() }),
  ]),
  nullable: z.object({ at: z.string().nullable(), n: z.number().finite() }).strict(),
  callbacks: z
    .object({ at: z.string().transform((v) => v.length), n: z.number() })
    .refine((v) => v.n >= 0, { message: "n must not be negative", path: ["n"] }),
};

/** Values near those schemas: right, wrong and odd in every field, extra keys, prototype keys. */
const value = fc.letrec((tie) => ({
  any: fc.oneof(
    { depthSize: "small" },
    fc.constantFrom(
      null,
      undefined,
      0,
      -1,
      1.5,
      Number.NaN,
      Number.POSITIVE_INFINITY,
      "",
      "abc",
      true,
    ),
    fc.string({ maxLength: 25 }),
    fc.integer(),
    fc.array(tie("any"), { maxLength: 6 }),
    fc.dictionary(
      fc.constantFrom(
        "orderId",
        "customer",
        "id",
        "tier",
        "note",
        "items",
        "coupon",
        "sku",
        "qty",
        "tags",
        "kind",
        "r",
        "side",
        "at",
        "n",
        "extra",
        "__proto__",
      ),
      tie("any"),
      { maxKeys: 7 },
    ),
    fc.record({
      orderId: fc.constantFrom("o-1", ""),
      customer: fc.record({ id: fc.constantFrom("c", ""), tier: fc.constantFrom("gold", "tin") }),
      items: fc.array(fc.oneof(fc.nat(), fc.constant(-3), fc.constant(2.5)), { maxLength: 7 }),
    }),
    fc
      .constantFrom("circle", "square")
      .chain((kind) => fc.record({ kind: fc.constant(kind), r: fc.double(), side: fc.integer() })),
  ),
})).any;

/** Values of each schema's shape, each field right or wrong by chance, sometimes with a key too many. */
const odd = <T>(good: fc.Arbitrary<T>): fc.Arbitrary<unknown> =>
  fc.tuple(fc.nat(9), good, value).map(([die, g, bad]) => (die === 0 ? bad : g));
const withExtra = (record: fc.Arbitrary<Record<string, unknown>>) =>
  fc.tuple(record, fc.boolean()).map(([r, extra]) => (extra ? { ...r, extra: 1 } : r));
const near: Record<keyof typeof schemas, fc.Arbitrary<unknown>> = {
  order: withExtra(
    fc.record(
      {
        orderId: odd(fc.string({ minLength: 1, maxLength: 5 })),
        customer: odd(
          fc.record({
            id: odd(fc.constantFrom("c1", "")),
            tier: odd(fc.constantFrom("gold", "tin")),
          }),
        ),
        note: odd(fc.string({ maxLength: 20 })),
        items: odd(fc.array(odd(fc.nat(50)), { maxLength: 5 })),
        coupon: odd(fc.string()),
      },
      { requiredKeys: ["orderId", "customer", "items"] },
    ),
  ),
  lines: fc.array(
    withExtra(
      fc.record({
        sku: odd(fc.string({ minLength: 2, maxLength: 4 })),
        qty: odd(fc.integer({ min: 0, max: 9 })),
        tags: odd(fc.array(odd(fc.string({ maxLength: 3 })), { maxLength: 3 })),
      }),
    ),
    { maxLength: 4 },
  ),
  shape: withExtra(
    fc.record({
      kind: odd(fc.constantFrom("circle", "square")),
      r: odd(fc.double({ min: -1, max: 5, noNaN: true })),
      side: odd(fc.double({ min: -1, max: 5, noNaN: true })),
    }),
  ),
  nullable: withExtra(
    fc.record({
      at: odd(fc.option(fc.string({ maxLength: 4 }))),
      n: odd(fc.oneof(fc.double(), fc.integer())),
    }),
  ),
  callbacks: withExtra(
    fc.record({ at: odd(fc.string({ maxLength: 4 })), n: odd(fc.integer({ min: -2, max: 50 })) }),
  ),
};

describe("validate", () => {
  it("validates with zod's compiled twin of a schema, made once", () => {
    const twin = compiled(schemas.order);
    expect(twin).not.toBe(schemas.order); // zod 4.5+ compiles it
    expect(compiled(schemas.order)).toBe(twin);
  });

  it("parses through the twin", () => {
    const schema = z.object({ a: z.string() });
    const twin = compiled(schema) as unknown as { _zod: { run: (...args: unknown[]) => unknown } };
    const run = twin._zod.run;
    let runs = 0;
    twin._zod.run = (...args) => {
      runs++;
      return run(...args);
    };
    expect(validate(schema, { a: "x" })).toEqual({ ok: true, value: { a: "x" } });
    expect(runs).toBe(1);
  });

  it("runs a transform and a refinement once for a value that passes, as the schema itself does", () => {
    let transforms = 0;
    let refines = 0;
    const schema = z
      .object({
        at: z.string().transform((v) => {
          transforms++;
          return v.length;
        }),
      })
      .refine(() => {
        refines++;
        return true;
      });
    expect(compiled(schema)).not.toBe(schema);
    expect(validate(schema, { at: "abc" })).toEqual({ ok: true, value: { at: 3 } });
    expect([transforms, refines]).toEqual([1, 1]);
  });

  it("uses the schema itself when the application turned zod's code generation off (jitless)", () => {
    const before = core.globalConfig.jitless;
    z.config({ jitless: true });
    try {
      const schema = z.object({ a: z.string() });
      expect(compiled(schema)).toBe(schema);
      expect(validate(schema, { a: "x" })).toEqual({ ok: true, value: { a: "x" } });
    } finally {
      z.config({ jitless: before ?? false });
    }
  });

  it("uses the schema itself where zod cannot compile it (an async refinement), and still validates", async () => {
    const slow = z.object({ a: z.string() }).refine(async (v) => v.a !== "no");
    expect(compiled(slow)).toBe(slow);
    await expect(validate(slow, { a: "yes" })).resolves.toEqual({ ok: true, value: { a: "yes" } });
    await expect(validate(slow, { a: "no" })).resolves.toMatchObject({ ok: false });
  });

  for (const [name, schema] of Object.entries(schemas)) {
    it(`gives what the schema itself gives, for any value: ${name}`, () => {
      let passed = 0;
      fc.assert(
        fc.property(
          fc.oneof(
            { weight: 3, arbitrary: near[name as keyof typeof schemas] },
            { weight: 1, arbitrary: value },
          ),
          (v) => {
            const got = validate(schema, v);
            const want = core.safeParse(schema, v);
            if (want.success) {
              passed++;
              expect(got).toEqual({ ok: true, value: want.data });
            } else {
              expect(got).toMatchObject({ ok: false });
              const issues = (
                got as { issues: Array<{ path: unknown; code: string; message: string }> }
              ).issues;
              expect(issues.map((i) => [i.path, i.code, i.message])).toEqual(
                want.error.issues.map((i) => [i.path, i.code, i.message]),
              );
            }
          },
        ),
        { numRuns: 1500 },
      );
      // Both outcomes were compared, many times each.
      expect(passed).toBeGreaterThan(50);
      expect(passed).toBeLessThan(1400);
    });
  }
});
