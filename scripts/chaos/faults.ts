/**
 * The fault driver: during one mode's load it SIGKILLs responders and restarts them, SIGKILLs server
 * nodes (one at a time) and restarts them, and pauses responders with SIGSTOP / SIGCONT, at times drawn
 * from a seeded generator. Each kind runs on a track of its own, so faults of different kinds may
 * overlap; a responder is never the target of two faults at once. Every fault is logged with a
 * timestamp when injected and when recovered.
 *
 * @module
 */
import type { NatsTestServer as NatsCluster } from "../../src/testing/nats/index.js";
import type { Timings } from "./config.js";
import type { ResponderPool } from "./pool.js";
import { createRng, type Rng } from "./prng.js";

/** The kinds of fault. */
export type FaultKind = "responder-kill" | "node-kill" | "responder-pause";

/** One fault, as injected. */
export interface FaultRecord {
  readonly kind: FaultKind;
  /** A responder slot (`r2`) or a node name (`n1`). */
  readonly target: string;
  /** The process the signal went to. */
  readonly pid: number | undefined;
  /** Epoch ms at which it was injected. */
  readonly at: number;
  /** Epoch ms at which it had recovered (restarted and ready, meta leader agreed, or SIGCONT sent). */
  recoveredAt: number | undefined;
  /** What happened, for the log. */
  detail: string;
  /** Why recovery failed, if it did. */
  error?: string;
}

/** How many faults of each kind one mode gets. */
export interface FaultPlan {
  readonly responderKills: number;
  readonly nodeKills: number;
  readonly pauses: number;
}

/** What the driver works on. */
export interface FaultEnv {
  readonly cluster: NatsCluster;
  readonly responders: ResponderPool;
  readonly rng: Rng;
  readonly timings: Timings;
  /** Epoch ms: the load's start and end. Faults are injected inside it, late enough to recover in it. */
  readonly loadStart: number;
  readonly loadEnd: number;
  /** Prints one line. */
  readonly log: (line: string) => void;
  /** Aborts the tracks (each ends after the step it is in). */
  readonly signal: AbortSignal;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));

/** Resolves at epoch ms `at`, or at once when `signal` aborts. */
function until(at: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, Math.max(0, at - Date.now()));
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}

/**
 * Times for `count` faults on one track: one drawn uniformly in each of `count` equal segments of
 * [from, to], so they spread over the load.
 */
function planTimes(rng: Rng, count: number, from: number, to: number): number[] {
  if (count <= 0 || to <= from) return [];
  const width = (to - from) / count;
  return Array.from({ length: count }, (_, i) => from + width * i + rng.next() * width);
}

/**
 * Runs every fault of `plan` during the load and resolves, once every track is done, with the
 * faults in the order they were injected.
 */
export async function driveFaults(env: FaultEnv, plan: FaultPlan): Promise<FaultRecord[]> {
  const { cluster, responders, timings, log, signal } = env;
  // One generator per track, so each track's draws do not depend on how the others' interleave.
  const fork = () => createRng(Math.floor(env.rng.next() * 2 ** 32));
  const [killRng, pauseRng, nodeRng] = [fork(), fork(), fork()];
  const faults: FaultRecord[] = [];
  /** Responder slots that a fault holds now. */
  const busy = new Set<string>();
  const stamp = (at: number) =>
    `${new Date(at).toISOString()} +${((at - env.loadStart) / 1000).toFixed(1).padStart(5)}s`;
  const record = (fault: FaultRecord) => {
    faults.push(fault);
    log(`${stamp(fault.at)}  ${fault.detail}`);
    return fault;
  };
  const recovered = (fault: FaultRecord, what: string) => {
    fault.recoveredAt = Date.now();
    log(`${stamp(fault.recoveredAt)}    ${fault.target} ${what}`);
  };
  const failed = (fault: FaultRecord, err: unknown) => {
    fault.error = (err as Error)?.message ?? String(err);
    log(`${stamp(Date.now())}    ${fault.target} did not recover: ${fault.error}`);
  };
  const skipped = (kind: FaultKind, why: string) =>
    log(`${stamp(Date.now())}  skipped a ${kind}: ${why}`);

  /** A responder slot that is running and not held by another fault, or undefined by `deadline`. */
  const freeSlot = async (rng: Rng, deadline: number): Promise<string | undefined> => {
    for (;;) {
      const free = responders.slots.filter((s) => !busy.has(s) && responders.current(s).running);
      if (free.length > 0) return rng.pick(free);
      if (Date.now() >= deadline || signal.aborted) return undefined;
      await sleep(100);
    }
  };

  const earliest = env.loadStart + 1_000;
  const restartMs = 3_000;

  const responderKills = async () => {
    const latest = env.loadEnd - restartMs;
    for (const at of planTimes(killRng, plan.responderKills, earliest, latest)) {
      await until(at, signal);
      const slot = await freeSlot(killRng, latest);
      if (signal.aborted) return;
      if (slot === undefined) {
        skipped("responder-kill", "no free responder");
        continue;
      }
      busy.add(slot);
      const victim = responders.current(slot);
      const downMs = killRng.between(200, 1_500);
      const fault = record({
        kind: "responder-kill",
        target: slot,
        pid: victim.pid,
        at: Date.now(),
        recoveredAt: undefined,
        detail: `SIGKILL responder ${slot} (pid ${victim.pid}); restart in ${Math.round(downMs)} ms`,
      });
      try {
        await victim.kill();
        await sleep(downMs);
        const fresh = await responders.restart(slot);
        recovered(fault, `restarted as pid ${fresh.pid}, ready`);
      } catch (err) {
        failed(fault, err);
      } finally {
        busy.delete(slot);
      }
    }
  };

  const pauses = async () => {
    const latest = env.loadEnd - timings.pauseMs - 1_000;
    for (const at of planTimes(pauseRng, plan.pauses, earliest, latest)) {
      await until(at, signal);
      const slot = await freeSlot(pauseRng, latest);
      if (signal.aborted) return;
      if (slot === undefined) {
        skipped("responder-pause", "no free responder");
        continue;
      }
      busy.add(slot);
      const victim = responders.current(slot);
      const fault = record({
        kind: "responder-pause",
        target: slot,
        pid: victim.pid,
        at: Date.now(),
        recoveredAt: undefined,
        detail: `SIGSTOP responder ${slot} (pid ${victim.pid}) for ${timings.pauseMs} ms`,
      });
      victim.signal("SIGSTOP");
      await sleep(timings.pauseMs);
      victim.signal("SIGCONT");
      recovered(fault, "SIGCONT");
      busy.delete(slot);
    }
  };

  const nodeKills = async () => {
    const latest = env.loadEnd - 5_000;
    // Distinct nodes while there are enough, in a random order.
    const order = nodeRng.shuffle(cluster.nodes.map((n) => n.name));
    let k = 0;
    for (const at of planTimes(nodeRng, plan.nodeKills, earliest, latest)) {
      await until(at, signal);
      if (signal.aborted) return;
      if (Date.now() > latest) {
        skipped("node-kill", "the previous one took too long to recover");
        continue;
      }
      const node = cluster.node(order[k++ % order.length] as string);
      const downMs = nodeRng.between(1_000, 2_500);
      const fault = record({
        kind: "node-kill",
        target: node.name,
        pid: node.pid,
        at: Date.now(),
        recoveredAt: undefined,
        detail: `SIGKILL node ${node.name} (pid ${node.pid}); restart in ${Math.round(downMs)} ms`,
      });
      try {
        await node.kill("SIGKILL");
        await sleep(downMs);
        await node.start();
        const leader = await cluster.waitForMetaLeader(20_000);
        recovered(fault, `restarted as pid ${node.pid}; meta leader ${leader}`);
      } catch (err) {
        failed(fault, err);
      }
    }
  };

  await Promise.all([responderKills(), pauses(), nodeKills()]);
  return faults.sort((a, b) => a.at - b.at);
}
