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
  parseIntHeader,
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

  it("parses only non-negative integer headers", () => {
    expect(parseIntHeader("250")).toBe(250);
    for (const bad of [undefined, "", "-1", "1.5", "abc", "1e400"])
      expect(parseIntHeader(bad)).toBeUndefined();
  });
});
