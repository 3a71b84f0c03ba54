/**
 * The child processes of a chaos run (responders and the client): spawned through tsx, their stdout
 * read as events, their stderr kept in a log file, and every one of them tracked so that a hard
 * timeout (or the parent's exit) can SIGKILL them all.
 *
 * @module
 */
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { createInterface } from "node:readline";
import { type ChildEvent, parseEvent } from "./records.js";

/** A running (or exited) child process. */
export interface Child {
  /** `client`, or the responder's slot (`r1`..`r3`). */
  readonly name: string;
  readonly pid: number;
  /** Whether it has not exited yet (it may be stopped by SIGSTOP). */
  readonly running: boolean;
  /** Resolves when it has exited. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves with the first event that matches (already seen or coming); rejects if it exits first or after `timeoutMs`. */
  waitFor<K extends ChildEvent["event"]>(
    event: K,
    timeoutMs: number,
  ): Promise<Extract<ChildEvent, { event: K }>>;
  /** Sends `signal` if it still runs. */
  signal(signal: NodeJS.Signals): void;
  /** SIGKILL, then waits for the exit. */
  kill(): Promise<void>;
  /**
   * SIGCONT and SIGTERM, waits up to `graceMs` for the exit, then SIGKILL. Resolves with how long it
   * took and whether it had to be killed (undefined if it had exited already).
   */
  stop(graceMs: number): Promise<{ ms: number; killed: boolean } | undefined>;
  /** Writes one line to its stdin (spawned with `stdin: true`). */
  send(line: string): void;
}

/** Every child spawned by this process that may still run. */
const live = new Set<ChildProcess>();

/** SIGKILLs every child this process spawned that still runs (synchronous: safe in an exit handler). */
export function killAllChildren(): void {
  for (const child of live) {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  }
}
process.on("exit", killAllChildren);

/**
 * Spawns `node --import tsx <script> <JSON config>`.
 *
 * @param options.logFile - where its stderr goes (appended).
 * @param options.onEvent - told of every event it prints.
 * @param options.stdin - whether to keep a pipe to its stdin, for {@link Child.send}.
 */
export function spawnChild(options: {
  name: string;
  script: string;
  config: unknown;
  logFile: string;
  onEvent?: (event: ChildEvent, child: Child) => void;
  stdin?: boolean;
}): Child {
  const log = openSync(options.logFile, "a");
  const proc = spawn(
    process.execPath,
    ["--import", "tsx", options.script, JSON.stringify(options.config)],
    { stdio: [options.stdin === true ? "pipe" : "ignore", "pipe", log] },
  );
  closeSync(log);
  live.add(proc);
  const events: ChildEvent[] = [];
  const listeners = new Set<() => void>();
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    proc.once("exit", (code, signal) => {
      live.delete(proc);
      resolve({ code, signal });
      for (const l of listeners) l();
    });
    proc.once("error", () => {
      live.delete(proc);
      resolve({ code: null, signal: null });
      for (const l of listeners) l();
    });
  });
  const running = () => proc.exitCode === null && proc.signalCode === null;
  const child: Child = {
    name: options.name,
    pid: proc.pid ?? -1,
    get running() {
      return running();
    },
    exited,
    waitFor(event, timeoutMs) {
      type Wanted = Extract<ChildEvent, { event: typeof event }>;
      return new Promise<Wanted>((resolve, reject) => {
        const check = () => {
          const found = events.find((e) => e.event === event);
          if (found !== undefined) {
            done();
            resolve(found as Wanted);
          } else if (!running()) {
            done();
            reject(new Error(`${options.name} (pid ${proc.pid}) exited before "${event}"`));
          }
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`${options.name} (pid ${proc.pid}): no "${event}" in ${timeoutMs} ms`));
        }, timeoutMs);
        const done = () => {
          clearTimeout(timer);
          listeners.delete(check);
        };
        listeners.add(check);
        check();
      });
    },
    signal(signal) {
      if (running()) proc.kill(signal);
    },
    async kill() {
      if (running()) proc.kill("SIGKILL");
      await exited;
    },
    async stop(graceMs) {
      if (!running()) return undefined;
      const t0 = Date.now();
      let killed = false;
      proc.kill("SIGCONT");
      proc.kill("SIGTERM");
      const timer = setTimeout(() => {
        killed = true;
        proc.kill("SIGKILL");
      }, graceMs);
      await exited;
      clearTimeout(timer);
      return { ms: Date.now() - t0, killed };
    },
    send(line) {
      if (proc.stdin === null) throw new Error(`${options.name} was spawned without stdin`);
      proc.stdin.write(`${line}\n`);
    },
  };
  if (proc.stdout !== null) {
    createInterface({ input: proc.stdout }).on("line", (line) => {
      const event = parseEvent(line);
      if (event === undefined) return;
      events.push(event);
      options.onEvent?.(event, child);
      for (const l of listeners) l();
    });
  }
  return child;
}
