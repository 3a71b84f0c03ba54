/**
 * `ricochet/testing`: what tests of ricochet services need. A fault-injecting transport, a client and
 * a responder over one bus in one line, a way to await a call reaching a handler, and a context
 * factory to unit-test handlers with no bus. The main entry never loads this one.
 *
 * @module
 */
export type { Fault, FaultRule, FaultyTransport } from "./faulty.js";
export { faultyTransport } from "./faulty.js";
export type { CallRecorder, TestContext, TestPair } from "./helpers.js";
export { recordCalls, testContext, testPair } from "./helpers.js";
export type { NatsRuntime, NatsTestNode, NatsTestServer, StartNatsOptions } from "./nats/index.js";
export { startNats } from "./nats/index.js";
