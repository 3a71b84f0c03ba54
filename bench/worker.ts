/**
 * Runs the measurements for one implementation in this process and prints them as JSON on stdout.
 * Started by bench/run.ts, one process per implementation and repeat, pinned to its own CPU.
 *
 *   node --expose-gc --import tsx bench/worker.ts <impl> <servers> '<plan json>'
 */
import { performance } from "node:perf_hooks";
import { create as handwritten } from "./impls/handwritten.js";
import { create as natsRequest } from "./impls/nats-request.js";
import {
  create as ricochet,
  createDurable as ricochetDurable,
  createWithKvDedupe as ricochetKv,
  createWithoutDedupe as ricochetNoDedupe,
} from "./impls/ricochet.js";
import type { Impl, ImplFactory } from "./impls/types.js";
import { makeRequest } from "./payload.js";

export interface Plan {
  latency?: { warmup: number; count: number; bytes: number };
  throughput?: Array<{ inflight: number; bytes: number; durationMs: number; warmupMs: number }>;
  memory?: { inflight: number; soakCalls: number; soakInflight: number; bytes: number };
}

export interface WorkerResult {
  latency?: { p50us: number; p99us: number; count: number };
  /** Calls per second, and this process's CPU time per call (client and responder together). */
  throughput?: Array<{
    inflight: number;
    bytes: number;
    callsPerSec: number;
    cpuUsPerCall: number;
  }>;
  memory?: {
    bytesPerInflight: number;
    soakGrowth: number;
    soakCalls: number;
    /** Calls per second during the soak. */
    soakCallsPerSec: number;
    /** Right after the soak, after GC: the JS heap, and the ArrayBuffers outside it, in MiB. */
    heapMiB: number;
    arrayBuffersMiB: number;
  };
}

const factories: Record<string, () => Promise<ImplFactory>> = {
  "nats-request": async () => natsRequest,
  handwritten: async () => handwritten,
  ricochet: async () => ricochet,
  "ricochet-nodedupe": async () => ricochetNoDedupe,
  "ricochet-kv": async () => ricochetKv,
  "ricochet-durable": async () => ricochetDurable,
  services: async () => (await import("./impls/services.js")).create,
  moleculer: async () => (await import("./impls/moleculer.js")).create,
};

const gc = () => {
  const g = (globalThis as { gc?: () => void }).gc;
  if (!g) throw new Error("run with --expose-gc");
  g();
  g();
};
const quantile = (sorted: number[], q: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;

async function latency(impl: Impl, p: NonNullable<Plan["latency"]>) {
  const req = makeRequest(p.bytes);
  for (let i = 0; i < p.warmup; i++) await impl.call(req);
  const samples = new Float64Array(p.count);
  for (let i = 0; i < p.count; i++) {
    const t0 = performance.now();
    await impl.call(req);
    samples[i] = (performance.now() - t0) * 1000;
  }
  const sorted = Array.from(samples).sort((a, b) => a - b);
  return {
    p50us: Math.round(quantile(sorted, 0.5)),
    p99us: Math.round(quantile(sorted, 0.99)),
    count: p.count,
  };
}

/** Closed loop: `inflight` workers each make calls back to back until the time is up. */
async function throughput(impl: Impl, t: NonNullable<Plan["throughput"]>[number]) {
  const req = makeRequest(t.bytes);
  const run = async (ms: number) => {
    let done = 0;
    const until = performance.now() + ms;
    const worker = async () => {
      while (performance.now() < until) {
        await impl.call(req);
        done++;
      }
    };
    const t0 = performance.now();
    const cpu0 = process.cpuUsage();
    await Promise.all(Array.from({ length: t.inflight }, worker));
    const cpu = process.cpuUsage(cpu0);
    return {
      rate: done / ((performance.now() - t0) / 1000),
      cpuUs: (cpu.user + cpu.system) / done,
    };
  };
  await run(t.warmupMs);
  const { rate, cpuUs } = await run(t.durationMs);
  return {
    inflight: t.inflight,
    bytes: t.bytes,
    callsPerSec: Math.round(rate),
    cpuUsPerCall: Number(cpuUs.toFixed(2)),
  };
}

async function memory(impl: Impl, m: NonNullable<Plan["memory"]>) {
  const req = makeRequest(m.bytes);
  if (!impl.hold || !impl.release || !impl.arrived)
    throw new Error("implementation cannot hold replies");
  for (let i = 0; i < 2000; i++) await impl.call(req);
  gc();
  const base = process.memoryUsage().heapUsed;
  impl.hold();
  const calls = Array.from({ length: m.inflight }, () => impl.call(req));
  const deadline = Date.now() + 30_000;
  while (impl.arrived() < m.inflight && Date.now() < deadline)
    await new Promise((r) => setImmediate(r));
  gc();
  const held = process.memoryUsage().heapUsed;
  impl.release();
  await Promise.all(calls);
  // Soak: many calls, then the heap must come back to where it was.
  gc();
  const before = process.memoryUsage().heapUsed;
  let left = m.soakCalls;
  const worker = async () => {
    while (left-- > 0) await impl.call(req);
  };
  const soak0 = performance.now();
  await Promise.all(Array.from({ length: m.soakInflight }, worker));
  const soakMs = performance.now() - soak0;
  gc();
  const usage = process.memoryUsage();
  const after = usage.heapUsed;
  const mib = (n: number) => Number((n / 2 ** 20).toFixed(1));
  return {
    bytesPerInflight: Math.round((held - base) / m.inflight),
    soakGrowth: Number(((after - before) / before).toFixed(3)),
    soakCalls: m.soakCalls,
    soakCallsPerSec: Math.round(m.soakCalls / (soakMs / 1000)),
    heapMiB: mib(usage.heapUsed),
    arrayBuffersMiB: mib(usage.arrayBuffers),
  };
}

async function main() {
  const [name, servers, planJson] = process.argv.slice(2);
  const load = factories[name ?? ""];
  if (!load || !servers || !planJson) throw new Error("usage: worker.ts <impl> <servers> <plan>");
  const plan = JSON.parse(planJson) as Plan;
  const impl = await (await load())(servers);
  const result: WorkerResult = {};
  try {
    if (plan.latency) result.latency = await latency(impl, plan.latency);
    // Memory first: what a soak leaves behind is then the soak's own, not the large payloads' of the
    // throughput runs (a dedupe store keeps each reply until its caller's deadline).
    if (plan.memory) result.memory = await memory(impl, plan.memory);
    if (plan.throughput) {
      result.throughput = [];
      for (const t of plan.throughput) result.throughput.push(await throughput(impl, t));
    }
  } finally {
    await impl.close();
  }
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
