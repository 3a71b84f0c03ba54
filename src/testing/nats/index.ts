/** A nats-server for a test: in a container, from the local binary, or at `NATS_URL`. */
export { startNats } from "./start.js";
export type { NatsRuntime, NatsTestNode, NatsTestServer, StartNatsOptions } from "./types.js";
