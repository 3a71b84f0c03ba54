import { describe, expect, it } from "vitest";
import { isRpcError, RPC_CODES, RpcError } from "../../src/errors.js";
import { backoffMs, DEFAULT_RETRY, resolveRetry } from "../../src/retry.js";

describe("RpcError", () => {
  it("takes its status and retryability from the code table", () => {
    expect(new RpcError("NO_RESPONDERS", "x")).toMatchObject({
      status: 503,
      retryable: true,
      name: "RpcError",
    });
    expect(new RpcError("INVALID_REQUEST", "x")).toMatchObject({ status: 400, retryable: false });
    expect(new RpcError("MY_CODE", "x")).toMatchObject({ status: 400, retryable: false });
  });

  it("is recognised across copies of the library by its brand, not only instanceof", () => {
    const foreign = Object.create(null) as Record<symbol, unknown>;
    foreign[Symbol.for("ricochet.RpcError")] = true;
    expect(isRpcError(foreign)).toBe(true);
    expect(isRpcError(new Error("x"))).toBe(false);
    expect(isRpcError(null)).toBe(false);
  });

  it("serialises to { code, message, details } and keeps cause off the wire", () => {
    const err = new RpcError("X_FAILED", "boom", { details: { a: 1 }, cause: new Error("secret") });
    expect(JSON.parse(JSON.stringify(err))).toEqual({
      code: "X_FAILED",
      message: "boom",
      details: { a: 1 },
    });
    expect((err.cause as Error).message).toBe("secret");
  });

  it("lists a status for every built-in code", () => {
    for (const [code, { status }] of Object.entries(RPC_CODES))
      expect(new RpcError(code, "").status).toBe(status);
  });
});

describe("retry policy", () => {
  it("draws full-jitter backoff below a ceiling that doubles up to maxMs", () => {
    const p = resolveRetry({ attempts: 6, baseMs: 100, maxMs: 500 });
    expect([2, 3, 4, 5].map((n) => backoffMs(p, n, () => 0.999999))).toEqual([99, 199, 399, 499]);
    expect(backoffMs(p, 2, () => 0)).toBe(0);
  });

  it("uses the documented defaults and rejects bad options by name", () => {
    expect(resolveRetry(undefined)).toEqual(DEFAULT_RETRY);
    expect(() => resolveRetry({ attempts: 0 })).toThrow(
      /retry\.attempts must be an integer >= 1, got 0/,
    );
    expect(() => resolveRetry({ baseMs: -1 })).toThrow(/retry\.baseMs/);
    expect(() => resolveRetry({ baseMs: 10, maxMs: 5 })).toThrow(/retry\.maxMs/);
  });

  it("retries only timeouts, no-responders, overload and draining", () => {
    const retryable = Object.entries(RPC_CODES)
      .filter(([, v]) => v.retryable)
      .map(([k]) => k)
      .sort();
    expect(retryable).toEqual(["NO_RESPONDERS", "OVERLOADED", "TIMEOUT", "UNAVAILABLE"]);
    expect(new RpcError("INSUFFICIENT_FUNDS", "").retryable).toBe(false);
  });
});
