/** The `"binary"` runtime: each node is a child process of the local nats-server binary. */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePorts, nodeConfig, startAll } from "./config.js";
import type { NatsTestNode } from "./types.js";

/** The error a missing binary gives, with what to do. */
export const NO_BINARY =
  "nats-server was not found on PATH. Install it (Debian/Ubuntu: `apt-get install nats-server`; " +
  "macOS: `brew install nats-server`; or https://github.com/nats-io/nats-server/releases), " +
  "run Docker with the optional `testcontainers` package installed, " +
  "or point the tests at a running server with NATS_URL=nats://127.0.0.1:4222 " +
  "(e.g. `docker run -p 4222:4222 nats -js`).";

/**
 * Runs `binary` with `args` (under `wrap`) and resolves once the server logs that it is ready, with
 * its process and the client port it listens on.
 */
export function launchServer(
  binary: string,
  args: readonly string[],
  wrap: readonly string[] = [],
  timeoutMs = 10_000,
): Promise<{ child: ChildProcess; port: number }> {
  return new Promise((resolve, reject) => {
    const argv = [...wrap, binary, ...args];
    const child = spawn(argv[0] as string, argv.slice(1), { stdio: ["ignore", "ignore", "pipe"] });
    let log = "";
    let settled = false;
    const fail = (err: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      child.kill("SIGKILL");
      reject(err);
    };
    const timer = setTimeout(
      () => fail(new Error(`nats-server did not become ready in ${timeoutMs} ms:\n${log}`)),
      timeoutMs,
    );
    timer.unref();
    child.once("error", (err: NodeJS.ErrnoException) =>
      fail(err.code === "ENOENT" ? new Error(NO_BINARY) : err),
    );
    child.once("exit", (code) =>
      fail(new Error(`nats-server exited early (code ${code}):\n${log}`)),
    );
    child.stderr?.setEncoding("utf8");
    child.stderr?.on("data", (chunk: string) => {
      if (settled) return; // keep draining stderr so the server never blocks on a full pipe
      log += chunk;
      const listening = /Listening for client connections on [\d.]+:(\d+)/.exec(log);
      if (listening && log.includes("Server is ready")) {
        settled = true;
        clearTimeout(timer);
        resolve({ child, port: Number(listening[1]) });
      }
    });
  });
}

/** Resolves once `child` has exited. */
export function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once("exit", () => resolve()));
}

/**
 * Resolves once the process's state (`/proc/<pid>/stat`) satisfies `done`: a signal is delivered
 * asynchronously, so a paused server may still answer for a moment after `kill(SIGSTOP)` returns. The
 * kernel has no event for it; this reads the state every millisecond, for at most 2 s. Where there is
 * no /proc (macOS), it resolves at once.
 */
async function processState(child: ChildProcess, done: (state: string) => boolean): Promise<void> {
  const until = Date.now() + 2000;
  while (Date.now() < until && child.exitCode === null && child.signalCode === null) {
    let stat: string;
    try {
      stat = readFileSync(`/proc/${child.pid}/stat`, "latin1");
    } catch {
      return;
    }
    // "pid (comm) S ...": the state follows the last ")".
    if (done(stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3))) return;
    await new Promise((r) => setTimeout(r, 1));
  }
}

/** Options the binary runtime uses. */
export interface BinaryOptions {
  readonly binary: string;
  readonly wrap: readonly string[];
  readonly config: string | undefined;
  readonly startupTimeoutMs: number;
}

/** Starts `size` nodes (routed to each other when more than one) and resolves once all are ready. */
export async function startBinaryNodes(
  size: number,
  options: BinaryOptions,
): Promise<{ nodes: NatsTestNode[]; close(): Promise<void> }> {
  const root = mkdtempSync(join(tmpdir(), "ricochet-nats-"));
  const ports = await freePorts(size * 3);
  const specs = Array.from({ length: size }, (_, i) => ({
    name: `n${i + 1}`,
    port: ports[i * 3] as number,
    routePort: ports[i * 3 + 1] as number,
    httpPort: ports[i * 3 + 2] as number,
  }));
  const children = new Map<string, ChildProcess>();
  const nodes = specs.map((spec): NatsTestNode => {
    const file = join(root, `${spec.name}.conf`);
    writeFileSync(
      file,
      nodeConfig({
        name: spec.name,
        listen: `127.0.0.1:${spec.port}`,
        http: `127.0.0.1:${spec.httpPort}`,
        storeDir: join(root, spec.name),
        cluster:
          size === 1
            ? undefined
            : {
                listen: `127.0.0.1:${spec.routePort}`,
                routes: specs
                  .filter((s) => s !== spec)
                  .map((s) => `nats-route://127.0.0.1:${s.routePort}`),
              },
        extra: options.config,
      }),
    );
    const child = () => children.get(spec.name);
    const node: NatsTestNode = {
      name: spec.name,
      url: `nats://127.0.0.1:${spec.port}`,
      port: spec.port,
      httpPort: spec.httpPort,
      get pid() {
        return node.running ? child()?.pid : undefined;
      },
      get running() {
        const c = child();
        return c !== undefined && c.exitCode === null && c.signalCode === null;
      },
      async kill(signal = "SIGKILL") {
        const c = child();
        if (c === undefined || !node.running) return;
        c.kill("SIGCONT"); // a paused server must run to act on SIGTERM
        c.kill(signal);
        await exited(c);
      },
      stop: () => node.kill("SIGTERM"),
      async start() {
        if (node.running) return;
        const launched = await launchServer(
          options.binary,
          ["-c", file],
          options.wrap,
          options.startupTimeoutMs,
        );
        children.set(spec.name, launched.child);
      },
      async restart() {
        await node.stop();
        await node.start();
      },
      async pause() {
        const c = child();
        if (c === undefined || !node.running) return;
        c.kill("SIGSTOP");
        await processState(c, (state) => state === "T" || state === "t");
      },
      async resume() {
        const c = child();
        if (c === undefined || !node.running) return;
        c.kill("SIGCONT");
        await processState(c, (state) => state !== "T" && state !== "t");
      },
    };
    return node;
  });
  // A test runner that exits without closing must not leave servers behind.
  const killAll = () => {
    for (const c of children.values()) c.kill("SIGKILL");
  };
  process.once("exit", killAll);
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await Promise.all(nodes.map((n) => n.kill("SIGTERM")));
    process.removeListener("exit", killAll);
    rmSync(root, { recursive: true, force: true });
  };
  return startAll(nodes, close);
}
