/**
 * Starts a throwaway nats-server on a free loopback port with JetStream in a temp dir, for tests that
 * need a real server (and may stop or restart it).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

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

export const HOW_TO_GET =
  "nats-server was not found on PATH. Install it (Debian/Ubuntu: `apt-get install nats-server`; " +
  "macOS: `brew install nats-server`; or https://github.com/nats-io/nats-server/releases), " +
  "or point the tests at a running server with NATS_URL=nats://127.0.0.1:4222 " +
  "(e.g. `docker run -p 4222:4222 nats -js`).";

function launch(
  binary: string,
  port: number,
  storeDir: string,
  wrap: string[] = [],
  config?: string,
): Promise<{ child: ChildProcess; port: number }> {
  const flags = ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", storeDir];
  return launchServer(binary, config === undefined ? flags : ["-c", config, ...flags], wrap);
}

/**
 * Runs `binary` with `args` (under `wrap`), and resolves once the server logs that it is ready, with
 * its process and the client port it listens on.
 */
export function launchServer(
  binary: string,
  args: readonly string[],
  wrap: readonly string[] = [],
): Promise<{ child: ChildProcess; port: number }> {
  return new Promise((resolve, reject) => {
    const argv = [...wrap, binary, ...args];
    const child = spawn(argv[0] as string, argv.slice(1), { stdio: ["ignore", "ignore", "pipe"] });
    let log = "";
    let settled = false;
    const fail = (err: Error) => {
      if (settled) return;
      settled = true;
      child.kill("SIGKILL");
      reject(err);
    };
    child.once("error", (err: NodeJS.ErrnoException) =>
      fail(err.code === "ENOENT" ? new Error(HOW_TO_GET) : err),
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
        resolve({ child, port: Number(listening[1]) });
      }
    });
    setTimeout(
      () => fail(new Error(`nats-server did not become ready in 10 s:\n${log}`)),
      10_000,
    ).unref();
  });
}

/** Resolves once `child` has exited. */
export function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once("exit", () => resolve()));
}

/** Starts a nats-server with JetStream on a free port (`-p -1`, the port read from its log). */
export async function startNatsServer(
  options: {
    /** The server binary. @default "nats-server" */
    binary?: string;
    /** A command to run it under, e.g. `["taskset", "-c", "0"]` to pin it to a CPU. */
    wrap?: string[];
    /** Server config text (authorization, TLS); the address, port and JetStream store are set here. */
    config?: string;
  } = {},
): Promise<NatsServer> {
  const binary = options.binary ?? "nats-server";
  const wrap = options.wrap ?? [];
  const storeDir = mkdtempSync(join(tmpdir(), "ricochet-nats-"));
  let config: string | undefined;
  if (options.config !== undefined) {
    config = join(storeDir, "server.conf");
    writeFileSync(config, options.config);
  }
  let child: ChildProcess;
  let port: number;
  try {
    ({ child, port } = await launch(binary, -1, storeDir, wrap, config));
  } catch (err) {
    rmSync(storeDir, { recursive: true, force: true });
    throw err;
  }
  const kill = () => child.kill("SIGKILL");
  process.once("exit", kill);
  const stop = async () => {
    child.kill("SIGTERM");
    await exited(child);
  };
  return {
    url: `nats://127.0.0.1:${port}`,
    get port() {
      return port;
    },
    stop,
    async restart() {
      await stop();
      ({ child, port } = await launch(binary, port, storeDir, wrap, config));
    },
    async [Symbol.asyncDispose]() {
      await stop();
      process.removeListener("exit", kill);
      rmSync(storeDir, { recursive: true, force: true });
    },
  };
}
