/** The shapes `startNats` takes and returns, the same whichever runtime serves them. */

/**
 * Where a test's nats-server runs.
 *
 * - `"container"`: a container started through Testcontainers (needs the optional `testcontainers`
 *   package and a reachable Docker engine).
 * - `"binary"`: a child process of the local `nats-server` binary.
 * - `"external"`: a server that is already running, at `NATS_URL` (or {@link StartNatsOptions.url});
 *   it is used as it is and cannot be stopped, restarted or configured.
 * - `"auto"`: the first of those three that works, in that order.
 */
export type NatsRuntime = "auto" | "container" | "binary" | "external";

/** Options for {@link startNats}. Every one is optional. */
export interface StartNatsOptions {
  /**
   * Where the server runs; see {@link NatsRuntime}.
   * @default process.env.RICOCHET_NATS_RUNTIME ?? "auto"
   */
  runtime?: NatsRuntime | undefined;
  /**
   * Start a JetStream cluster instead of one server: `true` for 3 nodes, or a node count (at least 3,
   * so that JetStream keeps a quorum through the loss of one node). {@link NatsTestServer.nodes}
   * holds them; the promise resolves once they agree on a meta leader.
   * @default false
   */
  cluster?: boolean | number | undefined;
  /**
   * nats-server configuration text added to every node's config: `authorization`, `accounts`,
   * limits. Do not set `listen`, `port`, `http`, `server_name`, `cluster` or the JetStream store:
   * `startNats` sets those. Files it names (TLS certificates) must exist where the server runs, so
   * a config that names host files needs `runtime: "binary"`.
   */
  config?: string | undefined;
  /**
   * The container image. Any image whose entrypoint is `nats-server` works: the official `nats`
   * images, or one built from a local binary with `scripts/nats-image.sh` for machines that cannot
   * pull images.
   * @default process.env.RICOCHET_NATS_IMAGE ?? "nats:2.11"
   */
  image?: string | undefined;
  /**
   * The server binary, for the `"binary"` runtime.
   * @default process.env.NATS_SERVER_BIN ?? "nats-server"
   */
  binary?: string | undefined;
  /** A command to run the binary under, e.g. `["taskset", "-c", "0"]` to pin it to one CPU. */
  wrap?: readonly string[] | undefined;
  /**
   * The server for the `"external"` runtime. A comma-separated list is accepted, as in `NATS_URL`.
   * @default process.env.NATS_URL
   */
  url?: string | undefined;
  /**
   * How long a node may take to become ready (a container's first start includes creating it).
   * @default 30_000
   */
  startupTimeoutMs?: number | undefined;
}

/** One nats-server of a {@link NatsTestServer}. */
export interface NatsTestNode {
  /** Its `server_name`: `n1`, `n2`, ... (`external` for a server that is not ours). */
  readonly name: string;
  /** `nats://127.0.0.1:<port>`, the same across restarts. */
  readonly url: string;
  /** The client port on 127.0.0.1. */
  readonly port: number;
  /** The monitoring port on 127.0.0.1 (`/healthz`, `/jsz`), undefined for an external server. */
  readonly httpPort: number | undefined;
  /** Whether the server is running (a paused one counts as running). */
  readonly running: boolean;
  /** Its process id, for the `"binary"` runtime while it runs. */
  readonly pid: number | undefined;
  /**
   * Sends `signal` (SIGKILL by default: a crash, no goodbye to clients or peers) and resolves once
   * the server has exited. `start()` brings it back with the same ports, config and JetStream store.
   */
  kill(signal?: "SIGKILL" | "SIGTERM" | "SIGINT" | "SIGQUIT"): Promise<void>;
  /** Shuts it down gracefully (SIGTERM) and resolves once it has exited. */
  stop(): Promise<void>;
  /** Starts it again (same ports, config and store); resolves once it is ready. A no-op if running. */
  start(): Promise<void>;
  /** `stop()`, then `start()`. */
  restart(): Promise<void>;
  /** Freezes it (SIGSTOP, or `docker pause`): connections stay open, nothing is answered. */
  pause(): Promise<void>;
  /** Undoes {@link NatsTestNode.pause}. */
  resume(): Promise<void>;
}

/**
 * A nats-server (or a cluster) for a test, from {@link startNats}. `await using` it, or call
 * `close()` in an `afterAll`.
 */
export interface NatsTestServer {
  /** The runtime that serves it. */
  readonly runtime: Exclude<NatsRuntime, "auto">;
  /** One line saying what runs and why this runtime was chosen; worth printing in a global setup. */
  readonly description: string;
  /** The first node's URL. */
  readonly url: string;
  /** Every node's URL, for a connection that may fail over to any of them. */
  readonly urls: string[];
  /** The nodes, `n1` first. One unless {@link StartNatsOptions.cluster} was set. */
  readonly nodes: readonly NatsTestNode[];
  /** The node named `name`; throws if there is none. */
  node(name: string): NatsTestNode;
  /** Stops every node gracefully. */
  stop(): Promise<void>;
  /** Kills every node (SIGKILL). */
  kill(): Promise<void>;
  /** Starts every node that is not running. */
  start(): Promise<void>;
  /** Stops every node, then starts them again with the same ports and stores. */
  restart(): Promise<void>;
  /**
   * Resolves with the JetStream meta leader's name once every running node names the same running
   * node as leader (a single server resolves with its own name). Rejects after `timeoutMs`.
   */
  waitForMetaLeader(timeoutMs?: number): Promise<string>;
  /** The name of the node leading stream `stream`, or undefined while it has none. */
  streamLeader(stream: string): Promise<string | undefined>;
  /** Removes every node and its store (a no-op for an external server). Safe to call twice. */
  close(): Promise<void>;
  /** `close()`, for `await using`. */
  [Symbol.asyncDispose](): Promise<void>;
}
