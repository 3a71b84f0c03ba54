import { memoryTransport } from "../../src/transport/memory.js";
import { rpcSuite } from "../rpc.suite.js";

rpcSuite("memory", async () => {
  const t = memoryTransport({ maxPayload: 64 * 1024 });
  return { a: t, b: t, close: () => t.close() };
});
