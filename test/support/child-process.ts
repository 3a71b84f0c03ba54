/** Starts a test responder in a process of its own, so a test can SIGKILL it. */
import { spawn } from "node:child_process";

export interface ChildResponder {
  readonly pid: number | undefined;
  /** Kills the process with SIGKILL and resolves once it has exited. Idempotent. */
  kill(): Promise<void>;
}

/**
 * Runs `script` (a TypeScript file, through tsx) with `args`, and resolves once it prints `ready`.
 * Rejects if it exits first.
 */
export async function startChild(script: string, args: string[]): Promise<ChildResponder> {
  const child = spawn(process.execPath, ["--import", "tsx", script, ...args], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const handle: ChildResponder = {
    pid: child.pid,
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await exited;
    },
  };
  await new Promise<void>((resolve, reject) => {
    child.stdout?.on("data", (d: Buffer) => d.toString().includes("ready") && resolve());
    child.once("exit", (code) =>
      reject(new Error(`${script} exited before it was ready (${code})`)),
    );
  });
  return handle;
}
