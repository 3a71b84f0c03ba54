/**
 * The test suite's own shorthand over `startNats` (from `ricochet/testing`): one server, by default in
 * whatever runtime `startNats` picks (a container when Docker is there, else the local binary).
 */
import { type StartNatsOptions, startNats } from "../../src/testing/nats/index.js";

/** A running test server. */
export interface NatsServer {
  /** `nats://127.0.0.1:<port>` */
  readonly url: string;
  readonly port: number;
  /** Stops the server (SIGTERM) and waits for it to exit. */
  stop(): Promise<void>;
  /** Stops it and starts it again on the same port with the same store. */
  restart(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Starts a nats-server with JetStream on a free port. `runtime` defaults to `RICOCHET_NATS_RUNTIME`,
 * else "auto"; a server that is to be stopped or configured is never the external one.
 */
export async function startNatsServer(
  options: Omit<StartNatsOptions, "cluster"> = {},
): Promise<NatsServer> {
  const server = await startNats({
    ...options,
    runtime: options.runtime ?? (options.binary || options.wrap ? "binary" : undefined),
  });
  if (server.runtime === "external") {
    await server.close();
    throw new Error("this test needs a server of its own: install nats-server or Docker");
  }
  return {
    url: server.url,
    port: server.nodes[0]?.port as number,
    stop: () => server.stop(),
    restart: () => server.restart(),
    [Symbol.asyncDispose]: () => server.close(),
  };
}
