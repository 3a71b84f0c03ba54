/**
 * Runs the measurements for one implementation in this process, for each payload set of the plan in
 * turn (a fresh responder and client per set), and prints them as JSON on stdout. Started by
 * bench/run.ts, one process per implementation and repeat, pinned to its own CPU.
 *
 *   node --expose-gc --import tsx bench/worker.ts <impl> <servers> '<plan json>'
 */
import { performance } from "node:perf_hooks";
import { factories } from "./impls/index.js";
import type { Impl, ImplFactory } from "./impls/types.js";
import { closedLoop } from "./loop.js";
import { getPayloadSet, type PayloadSet } from "./payload.js";
import { type PayloadResult, type Plan, throughputKey, type WorkerResult } from "./plan.js";

const gc = () => {
  const g = (globalThis as { gc?: () => void }).gc;
  if (!g) throw new Error("run with --expose-gc");
  g();
  g();
};
const quantile = (sorted: number[], q: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;

async function latency(impl: Impl, payload: PayloadSet, p: NonNullable<Plan["latency"]>) {
  const req = payload.makeRequest();
  const deadline = performance.now() + p.maxMs;
  for (let i = 0; i < p.warmup && performance.now() < deadline; i++) await impl.call(req);
  const samples = new Float64Array(p.count);
  let n = 0;
  while (n < p.count && performance.now() < deadline) {
    const t0 = performance.now();
    await impl.call(req);
    samples[n++] = (performance.now() - t0) * 1000;
  }
  const sorted = Array.from(samples.subarray(0, n)).sort((a, b) => a - b);
  return {
    p50us: Math.round(quantile(sorted, 0.5)),
    p99us: Math.round(quantile(sorted, 0.99)),
    count: n,
  };
}

/** Calls/s and CPU per call at `t.inflight`, after `t.warmupMs` at that concurrency. */
async function throughput(
  impl: Impl,
  payload: PayloadSet,
  t: NonNullable<Plan["throughput"]>[number],
) {
  const req = payload.makeRequest(t.bytes);
  await closedLoop(impl, req, t.inflight, t.warmupMs);
  const { rate, cpuUs } = await closedLoop(impl, req, t.inflight, t.durationMs);
  return {
    key: throughputKey(t),
    inflight: t.inflight,
    bytes: JSON.stringify(req).length,
    callsPerSec: Math.round(rate),
    cpuUsPerCall: Number(cpuUs.toFixed(2)),
  };
}

async function memory(impl: Impl, payload: PayloadSet, m: NonNullable<Plan["memory"]>) {
  const req = payload.makeRequest();
  if (!impl.hold || !impl.release || !impl.arrived)
    throw new Error("implementation cannot hold replies");
  for (let i = 0; i < 2000; i++) await impl.call(req);
  gc();
  const base = process.memoryUsage().heapUsed;
  impl.hold();
  const calls = Array.from({ length: m.inflight }, () => impl.call(req));
  const deadline = Date.now() + Math.min(30_000, m.maxMs);
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
  let soaked = 0;
  const soak0 = performance.now();
  const until = soak0 + m.maxMs;
  const worker = async () => {
    while (left-- > 0 && performance.now() < until) {
      await impl.call(req);
      soaked++;
    }
  };
  await Promise.all(Array.from({ length: m.soakInflight }, worker));
  const soakMs = performance.now() - soak0;
  gc();
  const usage = process.memoryUsage();
  const after = usage.heapUsed;
  const mib = (n: number) => Number((n / 2 ** 20).toFixed(1));
  return {
    bytesPerInflight: Math.round((held - base) / m.inflight),
    soakGrowth: Number(((after - before) / before).toFixed(3)),
    soakCalls: soaked,
    soakCallsPerSec: Math.round(soaked / (soakMs / 1000)),
    heapMiB: mib(usage.heapUsed),
    arrayBuffersMiB: mib(usage.arrayBuffers),
  };
}

async function measure(factory: ImplFactory, servers: string, payload: PayloadSet, plan: Plan) {
  const impl = await factory(servers, payload);
  const req = payload.makeRequest();
  const result: PayloadResult = {
    requestBytes: JSON.stringify(req).length,
    responseBytes: JSON.stringify(payload.respond(req)).length,
  };
  try {
    if (plan.warm) await closedLoop(impl, req, plan.warm.inflight, plan.warm.durationMs);
    if (plan.latency) result.latency = await latency(impl, payload, plan.latency);
    // Memory first: what a soak leaves behind is then the soak's own, not the large payloads' of the
    // throughput runs (a dedupe store keeps each reply until its caller's deadline).
    if (plan.memory) result.memory = await memory(impl, payload, plan.memory);
    if (plan.throughput) {
      result.throughput = [];
      for (const t of plan.throughput) {
        if (t.bytes !== undefined && !payload.sizable) continue;
        result.throughput.push(await throughput(impl, payload, t));
      }
    }
  } finally {
    await impl.close();
  }
  return result;
}

async function main() {
  const [name, servers, planJson] = process.argv.slice(2);
  const load = factories[name ?? ""];
  if (!load || !servers || !planJson) throw new Error("usage: worker.ts <impl> <servers> <plan>");
  const plan = JSON.parse(planJson) as Plan;
  const factory = await load();
  const result: WorkerResult = {};
  for (const p of plan.payloads) {
    result[p] = await measure(factory, servers, getPayloadSet(p), plan);
    gc();
  }
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
