/**
 * `npm run bench`: ricochet side by side with raw nats.js and peer frameworks, in one run, against a
 * nats-server this script starts on a free loopback port. Each implementation runs in its own process;
 * with `taskset` available the server is pinned to CPU 0 and the benchmark to CPU 1. Every measurement
 * is repeated (3 times by default) and the median is reported, also as a ratio to the hand-written
 * ceiling from the same run. Results go to bench/results/<timestamp>.json.
 *
 *   npm run bench                 # full run, about 8 minutes
 *   npm run bench -- --quick      # one repeat, shorter windows: a smoke test
 *   npm run bench -- --only ricochet,handwritten
 */
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { fileURLToPath } from "node:url";
import { startNatsServer } from "../test/support/nats-server.js";
import type { Plan, WorkerResult } from "./worker.js";

const here = fileURLToPath(new URL(".", import.meta.url));
const args = process.argv.slice(2);
const quick = args.includes("--quick");
const only = args.includes("--only")
  ? (args[args.indexOf("--only") + 1] ?? "").split(",")
  : undefined;
const repeats = quick ? 1 : 3;

const IMPLS = [
  { name: "handwritten", label: "hand-written pub/sub (ceiling)" },
  { name: "nats-request", label: "nats.js nc.request()" },
  { name: "ricochet", label: "ricochet default (zod both sides + memoryDedupe)" },
  { name: "ricochet-nodedupe", label: "ricochet, dedupe: false" },
  { name: "ricochet-kv", label: "ricochet, kvDedupe (JetStream KV)" },
  { name: "ricochet-durable", label: "ricochet durable calls (JetStream work queue)" },
  { name: "services", label: "@nats-io/services + nc.request()" },
  { name: "moleculer", label: "moleculer 0.14 (NATS transporter)" },
].filter((i) => only === undefined || only.includes(i.name));

const plan: Plan = {
  latency: { warmup: quick ? 200 : 500, count: quick ? 1000 : 3000, bytes: 200 },
  throughput: [
    ...[1, 16, 64, 256].map((inflight) => ({ inflight, bytes: 200 })),
    { inflight: 64, bytes: 8 * 1024 },
    { inflight: 64, bytes: 256 * 1024 },
  ].map((t) => ({ ...t, durationMs: quick ? 700 : 1500, warmupMs: quick ? 200 : 300 })),
  memory: { inflight: 10_000, soakCalls: quick ? 20_000 : 100_000, soakInflight: 64, bytes: 200 },
};

const hasTaskset = spawnSync("taskset", ["-c", "0", "true"]).status === 0 && cpus().length >= 2;

function peersReady(): boolean {
  const dir = `${here}peers`;
  if (existsSync(`${dir}/node_modules/moleculer`)) return true;
  console.error("installing the peer frameworks in bench/peers (moleculer, nats 2.x) ...");
  return (
    spawnSync("npm", ["install", "--no-audit", "--no-fund", "--loglevel=error"], {
      cwd: dir,
      stdio: "inherit",
    }).status === 0
  );
}

function runWorker(name: string, servers: string): Promise<WorkerResult> {
  const node = [
    process.execPath,
    "--expose-gc",
    "--import",
    "tsx",
    `${here}worker.ts`,
    name,
    servers,
    JSON.stringify(plan),
  ];
  const [cmd, ...rest] = hasTaskset ? ["taskset", "-c", "1", ...node] : node;
  return new Promise((resolve, reject) => {
    const child = spawn(cmd as string, rest, {
      env: { ...process.env, TSX_TSCONFIG_PATH: `${here}tsconfig.json` },
      stdio: ["ignore", "pipe", "inherit"],
    });
    let out = "";
    child.stdout.on("data", (d) => {
      out += d;
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), 180_000);
    child.on("exit", (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(JSON.parse(out.trim().split("\n").pop() as string) as WorkerResult);
      else reject(new Error(`${name} worker exited with ${code}`));
    });
  });
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
};

type Summary = {
  p50us?: number;
  p99us?: number;
  throughput: Record<string, { callsPerSec: number; cpuUsPerCall: number }>;
  bytesPerInflight?: number;
  soakGrowth?: number;
  soakCallsPerSec?: number;
  heapMiB?: number;
  arrayBuffersMiB?: number;
};

function summarise(runs: WorkerResult[]): Summary {
  const s: Summary = { throughput: {} };
  const lat = runs.flatMap((r) => (r.latency ? [r.latency] : []));
  if (lat.length) {
    s.p50us = median(lat.map((l) => l.p50us));
    s.p99us = median(lat.map((l) => l.p99us));
  }
  for (const t of plan.throughput ?? []) {
    const key = `${t.inflight}@${t.bytes}`;
    const got = runs.flatMap(
      (r) => r.throughput?.filter((x) => x.inflight === t.inflight && x.bytes === t.bytes) ?? [],
    );
    if (got.length) {
      s.throughput[key] = {
        callsPerSec: median(got.map((g) => g.callsPerSec)),
        cpuUsPerCall: median(got.map((g) => g.cpuUsPerCall)),
      };
    }
  }
  const mem = runs.flatMap((r) => (r.memory ? [r.memory] : []));
  if (mem.length) {
    s.bytesPerInflight = median(mem.map((m) => m.bytesPerInflight));
    s.soakGrowth = median(mem.map((m) => m.soakGrowth));
    s.soakCallsPerSec = median(mem.map((m) => m.soakCallsPerSec));
    s.heapMiB = median(mem.map((m) => m.heapMiB));
    s.arrayBuffersMiB = median(mem.map((m) => m.arrayBuffersMiB));
  }
  return s;
}

function version(cmd: string, argv: string[]): string {
  try {
    return execFileSync(cmd, argv, { encoding: "utf8" }).trim();
  } catch {
    return "unknown";
  }
}

async function main() {
  const server = await startNatsServer(hasTaskset ? { wrap: ["taskset", "-c", "0"] } : {});
  const peers = IMPLS.some((i) => i.name === "moleculer") ? peersReady() : false;
  const impls = IMPLS.filter((i) => i.name !== "moleculer" || peers);
  const runs = new Map<string, WorkerResult[]>(impls.map((i) => [i.name, []]));
  const failures: string[] = [];
  const started = Date.now();
  try {
    for (let rep = 1; rep <= repeats; rep++) {
      for (const impl of impls) {
        const t0 = Date.now();
        try {
          runs.get(impl.name)?.push(await runWorker(impl.name, server.url));
          console.error(
            `[${Math.round((Date.now() - started) / 1000)}s] repeat ${rep}/${repeats} ${impl.name} (${Date.now() - t0} ms)`,
          );
        } catch (err) {
          failures.push(`${impl.name} (repeat ${rep}): ${(err as Error).message}`);
          console.error(`repeat ${rep}/${repeats} ${impl.name} failed: ${(err as Error).message}`);
        }
      }
    }
  } finally {
    await server[Symbol.asyncDispose]();
  }

  const summaries = new Map(impls.map((i) => [i.name, summarise(runs.get(i.name) ?? [])]));
  const ceiling = summaries.get("handwritten");
  const natsRequest = summaries.get("nats-request");
  const ratio = (v: number | undefined, base: number | undefined) =>
    v === undefined || base === undefined || base === 0 ? "" : ` (${(v / base).toFixed(2)}×)`;
  const cols = (plan.throughput ?? []).map((t) => `${t.inflight}@${t.bytes}`);
  const head = [
    "implementation",
    "p50 µs",
    "p99 µs",
    ...cols.map((c) => {
      const [n, b] = c.split("@");
      const size = Number(b) >= 1024 ? `${Number(b) / 1024} KiB` : `${b} B`;
      return `calls/s ${n} in flight, ${size}`;
    }),
    "CPU µs/call (64, 200 B)",
    "heap B per call in flight (10k)",
    "heap growth after soak",
    "soak calls/s",
    "heap + buffers MiB after soak",
  ];
  const lines = [`| ${head.join(" | ")} |`, `|${head.map(() => "---").join("|")}|`];
  for (const impl of impls) {
    const s = summaries.get(impl.name) as Summary;
    const cells = [
      impl.label,
      `${s.p50us ?? "–"}${ratio(s.p50us, ceiling?.p50us)}`,
      `${s.p99us ?? "–"}${ratio(s.p99us, ceiling?.p99us)}`,
      ...cols.map((c) => {
        const v = s.throughput[c]?.callsPerSec;
        return v === undefined ? "–" : `${v}${ratio(v, ceiling?.throughput[c]?.callsPerSec)}`;
      }),
      `${s.throughput["64@200"]?.cpuUsPerCall ?? "–"}${ratio(s.throughput["64@200"]?.cpuUsPerCall, ceiling?.throughput["64@200"]?.cpuUsPerCall)}`,
      `${s.bytesPerInflight ?? "–"}${ratio(s.bytesPerInflight, ceiling?.bytesPerInflight)}`,
      s.soakGrowth === undefined ? "–" : `${(s.soakGrowth * 100).toFixed(1)}%`,
      `${s.soakCallsPerSec ?? "–"}`,
      s.heapMiB === undefined ? "–" : `${s.heapMiB} + ${s.arrayBuffersMiB}`,
    ];
    lines.push(`| ${cells.join(" | ")} |`);
  }
  const table = lines.join("\n");
  const env = {
    node: process.version,
    natsServer: version("nats-server", ["--version"]),
    cpu: cpus()[0]?.model ?? "unknown",
    cores: cpus().length,
    pinned: hasTaskset
      ? "nats-server on CPU 0, benchmark on CPU 1"
      : "not pinned (no taskset or one core)",
    repeats,
    quick,
  };
  const check = (name: string, ok: boolean | undefined, text: string) =>
    `- ${ok === undefined ? "n/a" : ok ? "met" : "NOT met"}: ${name}: ${text}`;
  const r = summaries.get("ricochet");
  const rn = summaries.get("ricochet-nodedupe");
  const c64 = ceiling?.throughput["64@200"]?.callsPerSec;
  const share = (s: Summary | undefined) =>
    s?.throughput["64@200"] && c64 ? s.throughput["64@200"].callsPerSec / c64 : undefined;
  const targets = [
    check(
      "ricochet dedupe: false at 64 in flight",
      share(rn) === undefined ? undefined : (share(rn) as number) >= 0.8,
      `${share(rn)?.toFixed(2)}× the ceiling (target ≥ 0.8×)`,
    ),
    check(
      "ricochet default (memoryDedupe) at 64 in flight",
      share(r) === undefined ? undefined : (share(r) as number) >= 0.7,
      `${share(r)?.toFixed(2)}× the ceiling (target ≥ 0.7×)`,
    ),
    check(
      "memoryDedupe costs little: ricochet default vs dedupe: false at 64 in flight",
      share(r) === undefined || share(rn) === undefined
        ? undefined
        : (share(r) as number) / (share(rn) as number) >= 0.9,
      `${share(r) && share(rn) ? ((share(r) as number) / (share(rn) as number)).toFixed(2) : "?"}× (target ≥ 0.9×)`,
    ),
    check(
      "ricochet default: memory after a 100k-call soak within the store's 128 MiB budget",
      r?.heapMiB === undefined ? undefined : r.heapMiB + (r.arrayBuffersMiB ?? 0) <= 128,
      `${r?.heapMiB} MiB heap + ${r?.arrayBuffersMiB} MiB buffers at ${r?.soakCallsPerSec} calls/s`,
    ),
    check(
      "ricochet sequential p50",
      rn?.p50us && natsRequest?.p50us ? rn.p50us / natsRequest.p50us <= 1.2 : undefined,
      `${rn?.p50us && natsRequest?.p50us ? (rn.p50us / natsRequest.p50us).toFixed(2) : "?"}× nc.request() (target ≤ 1.2×)`,
    ),
  ];
  const report = [
    `ricochet benchmark, ${new Date().toISOString()}`,
    `node ${env.node}, ${env.natsServer}, ${env.cpu} × ${env.cores}, ${env.pinned}; median of ${repeats}.`,
    "Every figure has, in brackets, its ratio to the hand-written ceiling in the same column (for latency,",
    "CPU and heap, lower is better). The p50 target compares with nc.request(), below. Durable calls",
    "write each command to a JetStream stream (file storage) before a responder pulls it: compare them",
    "with kvDedupe, not with core calls. Their heap per call in flight counts only the commands the",
    "consumer hands over at once (max_ack_pending 1000), the rest wait in the stream.",
    "",
    table,
    "",
    "Targets:",
    ...targets,
    ...(failures.length ? ["", "Failures:", ...failures.map((f) => `- ${f}`)] : []),
  ].join("\n");
  console.log(report);
  mkdirSync(`${here}results`, { recursive: true });
  const file = `${here}results/${new Date().toISOString().replace(/[:.]/g, "-")}.json`;
  writeFileSync(
    file,
    `${JSON.stringify({ env, plan, summaries: Object.fromEntries(summaries), runs: Object.fromEntries(runs), failures }, null, 2)}\n`,
  );
  console.log(`\nresults: ${file.slice(here.length - "bench/".length)}`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
