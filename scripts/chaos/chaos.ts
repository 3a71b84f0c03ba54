/**
 * The chaos run: a 3-node NATS cluster on loopback, and for each mode three responder processes in
 * one queue group, one client process sending a steady load, and a fault driver in this process.
 * {@link runChaos} returns the figures of every mode; `run.ts` is its command line.
 *
 * @module
 */
import { mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Kvm } from "@nats-io/kv";
import { connect } from "@nats-io/transport-node";
import { type NatsTestServer as NatsCluster, startNats } from "../../src/testing/nats/index.js";
import { spawnChild } from "./children.js";
import {
  type ClientConfig,
  deriveTimings,
  MODES,
  type Mode,
  ONCE_MODES,
  type ResponderConfig,
  type Timings,
} from "./config.js";
import { driveFaults, type FaultPlan, type FaultRecord } from "./faults.js";
import { READY_TIMEOUT_MS, type ResponderPool, startResponders } from "./pool.js";
import { createRng, deriveSeed, randomSeed } from "./prng.js";
import { readAnswers, readCalls, readEffects } from "./records.js";
import { computeFigures, DEFINITIONS, type ModeFigures, violations } from "./report.js";

const here = dirname(fileURLToPath(import.meta.url));

/** Options for {@link runChaos}. */
export interface ChaosOptions {
  /** The modes to run, in order. @default all three */
  modes?: readonly Mode[];
  /** Seconds of load per mode. @default 30 */
  seconds?: number;
  /** The seed of the fault schedule. @default a random one (printed) */
  seed?: number;
  /** Calls started per second. @default 100 */
  rate?: number;
  /** Calls in flight at most. @default 1000 */
  maxInFlight?: number;
  /** Each call's deadline; every other timing derives from it (see `deriveTimings`). @default 20000 */
  timeoutMs?: number;
  /** Faults per mode. @default 1 responder kill, 2 node kills, 1 pause */
  faults?: Partial<FaultPlan>;
  /** Where the raw files go (effects, answers, calls, child logs). Created if missing. */
  outDir: string;
  /** Prints progress and the fault log, one line at a time. @default console.log */
  log?: (line: string) => void;
  /** Aborting it stops the run: every child is killed and runChaos rejects. */
  signal?: AbortSignal;
  /** Told of each mode's figures as soon as they are known. */
  onMode?: (figures: ModeFigures) => void;
}

/** The outcome of a run. */
export interface ChaosReport {
  readonly seed: number;
  readonly startedAt: string;
  readonly seconds: number;
  readonly rate: number;
  readonly timings: Timings;
  readonly faultPlan: FaultPlan;
  readonly outDir: string;
  readonly definitions: typeof DEFINITIONS;
  readonly modes: readonly ModeFigures[];
  /** Must-be-zero figures that are not zero, as sentences; empty when the run passed. */
  readonly violations: readonly string[];
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Runs the chaos load in every mode of `options.modes`, one after another on one cluster, and
 * returns their figures. Stops by itself: the load is bounded in calls and time, each client exits
 * once its calls settled or passed their deadline + grace, and every child is killed on the way out
 * (also when the run fails or `signal` aborts).
 *
 * @throws when the cluster or the first responders cannot start, or `signal` aborted.
 */
export async function runChaos(options: ChaosOptions): Promise<ChaosReport> {
  const modes = options.modes ?? MODES;
  const seconds = options.seconds ?? 30;
  const seed = options.seed ?? randomSeed();
  const rate = options.rate ?? 100;
  const maxInFlight = options.maxInFlight ?? 1_000;
  const timings = deriveTimings(options.timeoutMs ?? 20_000);
  const plan: FaultPlan = {
    responderKills: options.faults?.responderKills ?? 1,
    nodeKills: options.faults?.nodeKills ?? 2,
    pauses: options.faults?.pauses ?? 1,
  };
  const log = options.log ?? ((line: string) => console.log(line));
  const signal = options.signal ?? new AbortController().signal;
  const outDir = options.outDir;
  const logDir = join(outDir, "logs");
  mkdirSync(logDir, { recursive: true });
  const startedAt = new Date().toISOString();

  log(
    `chaos: seed ${seed} (repeat with --seed ${seed}); ${seconds} s of load per mode; files in ${outDir}`,
  );
  log(
    `chaos: ${rate} calls/s (<= ${maxInFlight} in flight), deadline ${timings.timeoutMs} ms ` +
      `(first attempt window ${timings.attemptWindowMs} ms), pause ${timings.pauseMs} ms, ` +
      `kvDedupe lease ${timings.leaseMs} ms, durable ack wait ${timings.ackWaitMs} ms, grace ${timings.graceMs} ms`,
  );
  const cluster = await startNats({ cluster: true });
  const figures: ModeFigures[] = [];
  try {
    log(`chaos: cluster up: ${cluster.nodes.map((n) => `${n.name} ${n.url}`).join(", ")}`);
    for (const mode of modes) {
      if (signal.aborted) throw new Error("chaos run aborted");
      const f = await runMode({
        mode,
        cluster,
        seconds,
        rate,
        maxInFlight,
        timings,
        plan,
        seed: deriveSeed(seed, mode),
        outDir,
        logDir,
        log,
        signal,
      });
      figures.push(f);
      options.onMode?.(f);
    }
  } finally {
    await cluster[Symbol.asyncDispose]();
  }
  if (signal.aborted) throw new Error("chaos run aborted");
  return {
    seed,
    startedAt,
    seconds,
    rate,
    timings,
    faultPlan: plan,
    outDir,
    definitions: DEFINITIONS,
    modes: figures,
    violations: violations(figures, ONCE_MODES),
  };
}

/** Everything one mode needs. */
interface ModeRun {
  readonly mode: Mode;
  readonly cluster: NatsCluster;
  readonly seconds: number;
  readonly rate: number;
  readonly maxInFlight: number;
  readonly timings: Timings;
  readonly plan: FaultPlan;
  readonly seed: number;
  readonly outDir: string;
  readonly logDir: string;
  readonly log: (line: string) => void;
  readonly signal: AbortSignal;
}

/** Creates the mode's replica-3 dedupe bucket, retrying while JetStream settles after a restart. */
async function createBucket(cluster: NatsCluster, name: string, timings: Timings): Promise<void> {
  const nc = await connect({ servers: cluster.urls });
  try {
    for (let tries = 1; ; tries++) {
      try {
        await new Kvm(nc).create(name, { replicas: 3, history: 1, ttl: timings.kvTtlMs });
        return;
      } catch (err) {
        if (tries >= 20) throw err;
        await sleep(500);
      }
    }
  } finally {
    await nc.close();
  }
}

/** Runs one mode: fresh responders and client, the load, the faults; then reads its files. */
async function runMode(run: ModeRun): Promise<ModeFigures> {
  const { mode, cluster, timings, log, signal } = run;
  const [n1, n2, n3] = cluster.urls as [string, string, string];
  const effectsFile = join(run.outDir, "effects.log");
  const answersFile = join(run.outDir, "answers.log");
  const callsFile = join(run.outDir, `calls-${mode}.jsonl`);
  const harnessErrors: string[] = [];
  const say = (line: string) => log(`${new Date().toISOString()} chaos: ${mode}: ${line}`);

  // Every node up, one meta leader: the previous mode may have ended right after a restart.
  for (const node of cluster.nodes) await node.start();
  await cluster.waitForMetaLeader(20_000);
  const bucket = mode === "core-memory" ? undefined : `chaos_${mode.replace("-", "_")}`;
  if (bucket !== undefined) await createBucket(cluster, bucket, timings);

  say("starting 3 responders and the client");
  const configs: ResponderConfig[] = ["r1", "r2", "r3"].map((name, i) => ({
    mode,
    name,
    // Responders prefer nodes 2 and 3 (alternating), the client node 1.
    servers: i % 2 === 0 ? [n2, n3, n1] : [n3, n2, n1],
    effectsFile,
    answersFile,
    bucket,
    timings,
  }));
  let clientReconnects = 0;
  const clientConfig: ClientConfig = {
    mode,
    servers: [n1, n2, n3],
    callsFile,
    idPrefix: `${mode}_${run.seed.toString(36)}`,
    rate: run.rate,
    seconds: run.seconds,
    maxInFlight: run.maxInFlight,
    timings,
  };
  // The client starts (tsx, connect) beside the responders, and waits for "go" to load.
  const client = spawnChild({
    name: "client",
    script: join(here, "client.ts"),
    config: clientConfig,
    logFile: join(run.logDir, `${mode}-client.log`),
    onEvent: (event) => {
      if (event.event === "reconnect") clientReconnects++;
    },
    stdin: true,
  });
  const [pool, clientReady] = await Promise.allSettled([
    startResponders(join(here, "responder.ts"), configs, run.logDir),
    client.waitFor("ready", READY_TIMEOUT_MS),
  ]);
  if (pool.status === "rejected" || clientReady.status === "rejected") {
    await client.kill();
    if (pool.status === "fulfilled") await pool.value.stopAll(0);
    throw pool.status === "rejected" ? pool.reason : (clientReady as PromiseRejectedResult).reason;
  }
  const responders: ResponderPool = pool.value;
  const abort = () => {
    client.signal("SIGKILL");
    void responders.stopAll(0);
  };
  signal.addEventListener("abort", abort, { once: true });
  try {
    client.send("go");
    const started = await client.waitFor("started", 30_000);
    const loadEnd = started.at + run.seconds * 1_000;
    say(`load started (${run.rate} calls/s for ${run.seconds} s)`);

    const faultsDone = driveFaults(
      {
        cluster,
        responders,
        rng: createRng(run.seed),
        timings,
        loadStart: started.at,
        loadEnd,
        log: (line) => log(`  ${mode} ${line}`),
        signal,
      },
      run.plan,
    );
    // The client stops by itself: load, then at most deadline + grace for the last calls.
    const clientBudget = run.seconds * 1_000 + timings.timeoutMs + timings.graceMs + 15_000;
    let throttled = 0;
    try {
      const done = await client.waitFor("done", clientBudget);
      throttled = done.throttled;
    } catch (err) {
      harnessErrors.push(`client did not finish: ${(err as Error).message}`);
      client.signal("SIGKILL");
    }
    await Promise.race([client.exited, sleep(5_000)]);
    say("client finished; waiting for the fault driver, then stopping the responders");
    const faults: FaultRecord[] = await faultsDone;
    for (const f of faults) {
      if (f.error !== undefined) harnessErrors.push(`${f.kind} ${f.target}: ${f.error}`);
    }
    const killed = await responders.stopAll(5_000);
    say(
      killed.length === 0
        ? "responders stopped"
        : `responders stopped; SIGKILLed after 5 s without exiting on SIGTERM: ${killed.join(", ")}`,
    );
    return computeFigures({
      mode,
      calls: readCalls(callsFile),
      effects: readEffects(effectsFile, mode),
      answers: readAnswers(answersFile, mode),
      faults,
      timeoutMs: timings.timeoutMs,
      reconnects: { client: clientReconnects, responders: responders.reconnects },
      throttled,
      harnessErrors,
    });
  } finally {
    signal.removeEventListener("abort", abort);
    client.signal("SIGKILL");
    await responders.stopAll(0);
  }
}
