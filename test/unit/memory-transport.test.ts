import { describe, expect, it } from "vitest";
import { memoryTransport } from "../../src/transport/memory.js";
import { transportSuite } from "../transport.suite.js";

transportSuite("memory", async () => {
  const t = memoryTransport({ maxPayload: 64 * 1024 });
  return { a: t, b: t, close: () => t.close() };
});

describe("memoryTransport", () => {
  it("refuses to publish after close, saying how to recover", async () => {
    const t = memoryTransport();
    await t.close();
    expect(() => t.publish("a.b", new Uint8Array())).toThrow(/closed; create a new one/);
  });

  it("rejects an invalid maxPayload with a RangeError naming it", () => {
    expect(() => memoryTransport({ maxPayload: 0 })).toThrow(/maxPayload/);
  });

  it("rejects subjects with empty tokens or wildcards on publish", () => {
    const t = memoryTransport();
    expect(() => t.publish("a..b", new Uint8Array())).toThrow(/invalid publish subject/);
    expect(() => t.publish("a.*", new Uint8Array())).toThrow(/invalid publish subject/);
  });
});
