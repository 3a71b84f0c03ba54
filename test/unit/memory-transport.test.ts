import { Buffer } from "node:buffer";
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

  it("delivers a copy of the body, also of a Buffer cut from Node's shared pool", async () => {
    const t = memoryTransport();
    const got: Uint8Array[] = [];
    t.subscribe("a.b", (m) => got.push(m.data));
    // What encodeBody returns: a small Buffer, a view into a shared 8 KiB pool.
    const body = Buffer.from('{"n":1}', "utf8");
    t.publish("a.b", body);
    body[0] = 0x58; // the sender reuses its bytes after publishing
    await t.flush();
    await t.close();
    const data = got[0] as Uint8Array;
    expect(new TextDecoder().decode(data)).toBe('{"n":1}');
    // A buffer of its own: nothing else is reachable through data.buffer.
    expect(data.byteOffset).toBe(0);
    expect(data.buffer.byteLength).toBe(data.length);
  });

  it("rejects subjects with empty tokens or wildcards on publish", () => {
    const t = memoryTransport();
    expect(() => t.publish("a..b", new Uint8Array())).toThrow(/invalid publish subject/);
    expect(() => t.publish("a.*", new Uint8Array())).toThrow(/invalid publish subject/);
  });
});
