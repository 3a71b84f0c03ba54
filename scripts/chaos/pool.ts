/**
 * The responder processes of one mode: three slots (`r1`..`r3`), each holding the process currently
 * serving in it. The fault driver kills, pauses and restarts them through the pool; the pool counts
 * the reconnects every one of them reported, the dead ones included.
 *
 * @module
 */
import { join } from "node:path";
import { type Child, spawnChild } from "./children.js";
import type { ResponderConfig } from "./config.js";

/** How long a responder may take to print `ready` (tsx start-up, JetStream set-up). */
export const READY_TIMEOUT_MS = 40_000;

/** The responders of one mode. */
export interface ResponderPool {
  /** The slot names, `r1`..`r3`. */
  readonly slots: readonly string[];
  /** The process in `slot` now. */
  current(slot: string): Child;
  /** Starts a new process in `slot` (its previous one must have exited); resolves once it is ready. */
  restart(slot: string): Promise<Child>;
  /** `reconnect` events seen from all the responder processes of this pool. */
  readonly reconnects: number;
  /** Every pid that served in the pool. */
  readonly pids: readonly number[];
  /**
   * Stops (drains) every process, SIGKILL after `graceMs`; resolves with the slots whose process had
   * to be killed.
   */
  stopAll(graceMs: number): Promise<string[]>;
}

/**
 * Starts `configs.length` responders and resolves once every one is ready.
 *
 * @param script - the responder entry (`scripts/chaos/responder.ts`).
 * @param logDir - where each process's stderr goes, `<mode>-<slot>-<epoch ms>.log`.
 */
export async function startResponders(
  script: string,
  configs: readonly ResponderConfig[],
  logDir: string,
): Promise<ResponderPool> {
  const children = new Map<string, Child>();
  const pids: number[] = [];
  let reconnects = 0;
  const spawnSlot = async (config: ResponderConfig) => {
    const child = spawnChild({
      name: config.name,
      script,
      config,
      logFile: join(logDir, `${config.mode}-${config.name}-${Date.now()}.log`),
      onEvent: (event) => {
        if (event.event === "reconnect") reconnects++;
      },
    });
    children.set(config.name, child);
    pids.push(child.pid);
    await child.waitFor("ready", READY_TIMEOUT_MS);
    return child;
  };
  const byName = new Map(configs.map((c) => [c.name, c]));
  const pool: ResponderPool = {
    slots: configs.map((c) => c.name),
    current(slot) {
      const child = children.get(slot);
      if (child === undefined) throw new Error(`no responder in slot ${slot}`);
      return child;
    },
    restart(slot) {
      const config = byName.get(slot);
      if (config === undefined) throw new Error(`no responder slot ${slot}`);
      return spawnSlot(config);
    },
    get reconnects() {
      return reconnects;
    },
    pids,
    async stopAll(graceMs) {
      const stops = await Promise.all(
        [...children.values()].map(async (c) => ({ c, stop: await c.stop(graceMs) })),
      );
      return stops
        .filter(({ stop }) => stop?.killed === true)
        .map(({ c }) => `${c.name} (pid ${c.pid})`);
    },
  };
  try {
    await Promise.all(configs.map(spawnSlot));
  } catch (err) {
    await Promise.all([...children.values()].map((c) => c.kill()));
    throw err;
  }
  return pool;
}
