import { expect, it } from "vitest";

it("exports exactly the public API (a change here is a change to the public surface)", async () => {
  const api = await import("../src/index.js");
  expect(Object.keys(api).sort()).toMatchInlineSnapshot(`
    [
      "DEFAULT_BUCKETS",
      "HEADER_ATTEMPT",
      "HEADER_CALL_ID",
      "HEADER_ERROR",
      "HEADER_ERROR_CODE",
      "HEADER_PROGRESS",
      "HEADER_REPLY",
      "HEADER_TIMEOUT",
      "PayloadTooLargeError",
      "RPC_CODES",
      "RpcError",
      "clientTracing",
      "createClient",
      "createMetrics",
      "createResponder",
      "deadLetters",
      "defineContract",
      "isRpcError",
      "jetstreamQueue",
      "kvDedupe",
      "memoryDedupe",
      "memoryTransport",
      "method",
      "natsTransport",
      "responderTracing",
    ]
  `);
});
