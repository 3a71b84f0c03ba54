import { describe, expect, it } from "vitest";
import { z } from "zod";
import { defineContract, method } from "../../src/contract.js";

const m = method({ request: z.object({}), response: z.object({}) });

describe("defineContract", () => {
  it("returns a frozen contract with the methods and an empty description by default", () => {
    const c = defineContract({ service: "svc", version: "1.2.3", methods: { m } });
    expect(c).toMatchObject({ service: "svc", version: "1.2.3", description: "" });
    expect(Object.isFrozen(c)).toBe(true);
  });

  it.each(["", "a.b", "has space", "a*", "a>"])(
    "rejects the service name %j, saying what is allowed",
    (service) => {
      expect(() => defineContract({ service, version: "1.0.0", methods: { m } })).toThrow(
        /must be letters, digits/,
      );
    },
  );

  it.each(["1", "1.0", "v1.0.0", "1.0.0.0"])(
    "rejects the version %j, asking for semver",
    (version) => {
      expect(() => defineContract({ service: "s", version, methods: { m } })).toThrow(
        /semantic version/,
      );
    },
  );

  it("rejects a method name that is not one subject token", () => {
    expect(() => defineContract({ service: "s", version: "1.0.0", methods: { "a.b": m } })).toThrow(
      /method 'a.b'/,
    );
  });

  it("rejects a contract without methods, and a method not made with method()", () => {
    expect(() => defineContract({ service: "s", version: "1.0.0", methods: {} })).toThrow(
      /at least one method/,
    );
    expect(() =>
      defineContract({ service: "s", version: "1.0.0", methods: { x: {} as unknown as typeof m } }),
    ).toThrow(/made with method\(\)/);
  });
});

describe("method", () => {
  it("rejects error codes that are not SCREAMING_SNAKE or that shadow a built-in code", () => {
    expect(() =>
      method({ request: z.object({}), response: z.object({}), errors: { notFound: z.object({}) } }),
    ).toThrow(/SCREAMING_SNAKE/);
    expect(() =>
      method({ request: z.object({}), response: z.object({}), errors: { TIMEOUT: z.object({}) } }),
    ).toThrow(/built in/);
  });

  it("rejects schemas that are not zod 4 schemas", () => {
    expect(() => method({ request: {} as z.ZodObject, response: z.object({}) })).toThrow(
      /`request` must be a zod 4 schema/,
    );
  });
});
