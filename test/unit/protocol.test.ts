import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { RpcError } from "../../src/errors.js";
import {
  decodeBody,
  decodeError,
  encodeBody,
  encodeError,
  HEADER_ERROR,
  HEADER_ERROR_CODE,
  INVALID,
  isValidCallId,
  MAX_BUDGET_MS,
  parseAttemptHeader,
  parseMillisHeader,
} from "../../src/protocol.js";

describe("protocol", () => {
  it("round-trips any JSON value through the body codec", () => {
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        expect(decodeBody(encodeBody(v))).toEqual(JSON.parse(JSON.stringify(v)));
      }),
    );
  });

  it("encodes undefined as an empty body and decodes an empty body as undefined", () => {
    expect(encodeBody(undefined)).toHaveLength(0);
    expect(decodeBody(new Uint8Array())).toBeUndefined();
  });

  it("round-trips any error through the error reply, keeping code, message, details and status", () => {
    fc.assert(
      fc.property(
        fc.stringMatching(/^[A-Z][A-Z0-9_]{0,20}$/),
        fc.string(),
        fc.option(fc.jsonValue(), { nil: undefined }),
        fc.integer({ min: 400, max: 599 }),
        (code, message, details, status) => {
          const encoded = encodeError(new RpcError(code, message, { details, status }));
          expect(encoded.headers[HEADER_ERROR_CODE]).toBe(String(status));
          expect(encoded.headers[HEADER_ERROR]).not.toMatch(/[\r\n]/);
          const back = decodeError(status, encoded.headers[HEADER_ERROR], encoded.data);
          expect(back).toEqual({
            code,
            message,
            details: details === undefined ? undefined : JSON.parse(JSON.stringify(details)),
            status,
          });
        },
      ),
    );
  });

  it("reads a bare NATS micro error (headers only, any body) as the closest built-in code", () => {
    expect(decodeError(503, "draining", new TextEncoder().encode("not json"))).toMatchObject({
      code: "UNAVAILABLE",
      message: "draining",
    });
    expect(decodeError(500, undefined, new Uint8Array())).toMatchObject({
      code: "INTERNAL",
      message: "error 500",
    });
    expect(decodeError(400, "bad", new Uint8Array())).toMatchObject({ code: "INVALID_REQUEST" });
  });

  it("parses durations strictly: ASCII digits only, clamped to 2^31-1", () => {
    expect(parseMillisHeader("250")).toBe(250);
    expect(parseMillisHeader("0")).toBe(0);
    expect(parseMillisHeader(undefined)).toBeUndefined();
    // 20 digits is clamped, not turned into the default.
    expect(parseMillisHeader("12345678901234567890")).toBe(MAX_BUDGET_MS);
    expect(parseMillisHeader("9".repeat(40))).toBe(MAX_BUDGET_MS); // however many digits
    expect(parseMillisHeader("2147483648")).toBe(MAX_BUDGET_MS);
    for (const bad of [
      "",
      " 2000",
      "2000 ",
      "1e3",
      "0x10",
      "1500.5",
      "-5",
      "+5",
      "abc",
      "١٢",
      "NaN",
    ])
      expect(parseMillisHeader(bad)).toBe(INVALID);
  });

  it("parses attempts strictly: 1 to 2^31-1, no leading zeros", () => {
    expect(parseAttemptHeader("2")).toBe(2);
    expect(parseAttemptHeader(undefined)).toBeUndefined();
    for (const bad of ["", "0", "02", "-1", "1.0", " 2", "2147483648", "99999999999"])
      expect(parseAttemptHeader(bad)).toBe(INVALID);
  });

  it("accepts call ids of 1 to 512 characters without control characters or surrounding spaces", () => {
    for (const ok of [
      "a",
      "order-42",
      "order 42",
      "commande-é",
      "日本",
      "x".repeat(512),
      "~!#$%&'()*+,-./:;<=>?@[]^_`{|}",
    ])
      expect(isValidCallId(ok)).toBe(true);
    for (const bad of [
      "",
      " lead",
      "trail ",
      "tab\t",
      "x".repeat(513),
      "nul\u0000",
      "del\u007f",
      "cr\r",
    ])
      expect(isValidCallId(bad)).toBe(false);
  });
});
