/**
 * `npm run bench`: ricochet side by side with raw nats.js and peer frameworks, in one run, against a
 * nats-server this script starts on a free loopback port. Each implementation runs in its own process
 * (one per repeat, measuring every payload set in turn); with `taskset` available the server is pinned
 * to CPU 0 and the benchmark to CPU 1. Every measurement is repeated (3 times by default) and the
 * median is reported, also as a ratio to the hand-written ceiling from the same run and payload set.
 * Results go to bench/results/<timestamp>.json.
 *
 *   npm run bench                          # nested ~200 B and scalar sets; about 5 min on 2 cores
 *   npm run bench -- --payload large       # one set: scalar | nested | large | all (or a list: nested,large)
 *   npm run bench -- --full                # + 1 in flight, 8/256 KiB bodies (scalar), memory phase, 1.5 s windows
 *   npm run bench -- --quick               # one repeat, short windows, a small memory phase: a smoke test
 *   npm run bench -- --repeats 5           # more repeats
 *   npm run bench -- --only ricochet,handwritten
 */
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { fileURLToPath } from "node:url";
import { startNatsServer } from "../test/support/nats-server.js";
import { PAYLOADS, type PayloadName, payloadSets } from "./payload.js";
import { type PayloadResult, type Plan, throughputKey, type WorkerResult } from "./plan.js";

const here = fileURLToPath(new URL(".", import.meta.url));
const args = process.argv.slice(2);
const option = (name: string) =>
  args.includes(name) ? (args[args.indexOf(name) + 1] ?? "") : undefined;
const quick = args.includes("--quick");
const full = args.includes("--full");
const only = option("--only")?.split(",");
const payloadArg = option("--payload") ?? "nested,scalar";
const payloads: PayloadName[] =
  payloadArg === "all"
    ? [...PAYLOADS]
    : payloadArg.split(",").map((p) => {
        if (!(PAYLOADS as readonly string[]).includes(p))
          throw new Error(`--payload: "${p}" is not one of ${PAYLOADS.join(", ")}, all`);
        return p as PayloadName;
      });
const repeats = Number(option("--repeats") ?? (quick ? 1 : 3));
if (!Number.isInteger(repeats) || repeats < 1 || repeats > 9)
  throw new Error("--repeats: an integer from 1 to 9");

const IMPLS = [
  { name: "handwritten", label: "hand-written pub/sub (ceiling)" },
  { name: "handwritten-zod", label: "hand-written pub/sub + zod's four parses (compiled)" },
  { name: "nats-request", label: "nats.js nc.request()" },
  { name: "nats-request-noasynctraces", label: "nats.js nc.request(), noAsyncTraces: true" },
  { name: "ricochet", label: "ricochet default (zod both sides + memoryDedupe)" },
  { name: "ricochet-nodedupe", label: "ricochet, dedupe: false" },
  { name: "ricochet-kv", label: "ricochet, kvDedupe (JetStream KV)" },
  { name: "ricochet-durable", label: "ricochet durable calls (JetStream work queue)" },
  { name: "services", label: "@nats-io/services + nc.request()" },
  { name: "moleculer", label: "moleculer 0.14.36 (NATS transporter) [1]" },
].filter((i) => only === undefined || only.includes(i.name));

// Default: about 5 minutes for two payload sets on 2 cores. The 1-in-flight column (the sequential
// phase's mirror image) and the padded bodies come with --full, as do longer windows.
const windows = full
  ? { durationMs: 1500, warmupMs: 300 }
  : quick
    ? { durationMs: 300, warmupMs: 100 }
    : { durationMs: 400, warmupMs: 100 };
const plan: Plan = {
  payloads,
  // Measured past each process's start (compiled code, a grown heap): most of a first second is
  // the JIT's and the heap's, and would weigh on whichever implementation allocates more.
  warm: { inflight: 64, durationMs: quick ? 500 : 2000 },
  // The sequential phase: one call at a time, its p50 is the latency target's figure.
  latency: { warmup: quick ? 200 : 300, count: quick ? 1000 : full ? 3000 : 2000, maxMs: 20_000 },
  throughput: [
    ...(full ? [1, 16, 64, 256] : [16, 64, 256]).map((inflight) => ({ inflight })),
    // Padded bodies: scalar only (the other sets have their own fixed shape).
    ...(full ? [8 * 1024, 256 * 1024].map((bytes) => ({ inflight: 64, bytes })) : []),
  ].map((t) => ({ ...t, ...windows })),
  ...(full || quick
    ? {
        memory: {
          inflight: 10_000,
          soakCalls: quick ? 20_000 : 100_000,
          soakInflight: 64,
          maxMs: 30_000,
        },
      }
    : {}),
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
    const timer = setTimeout(() => child.kill("SIGKILL"), 120_000 * plan.payloads.length);
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
  throughput: Record<string, { callsPerSec: number; cpuUsPerCall: number; bytes: number }>;
  bytesPerInflight?: number;
  soakGrowth?: number;
  soakCallsPerSec?: number;
  heapMiB?: number;
  arrayBuffersMiB?: number;
};

/** Each figure of a summary divided by the ceiling's (same payload set, same run). */
type Ratios = {
  p50us?: number;
  p99us?: number;
  throughput: Record<string, { callsPerSec?: number; cpuUsPerCall?: number }>;
  bytesPerInflight?: number;
  /** Sequential p50 over nc.request()'s (the latency target), and over the noAsyncTraces one's. */
  p50VsNatsRequest?: number;
  p50VsNatsRequestNoAsyncTraces?: number;
};

function summarise(runs: PayloadResult[]): Summary {
  const s: Summary = { throughput: {} };
  const lat = runs.flatMap((r) => (r.latency ? [r.latency] : []));
  if (lat.length) {
    s.p50us = median(lat.map((l) => l.p50us));
    s.p99us = median(lat.map((l) => l.p99us));
  }
  for (const t of plan.throughput ?? []) {
    const key = throughputKey(t);
    const got = runs.flatMap((r) => r.throughput?.filter((x) => x.key === key) ?? []);
    if (got.length) {
      s.throughput[key] = {
        callsPerSec: median(got.map((g) => g.callsPerSec)),
        cpuUsPerCall: median(got.map((g) => g.cpuUsPerCall)),
        bytes: got[0]?.bytes as number,
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

const div = (v: number | undefined, base: number | undefined) =>
  v === undefined || base === undefined || base === 0 ? undefined : Number((v / base).toFixed(3));

function ratios(s: Summary, ceiling: Summary | undefined, nr?: Summary, nrq?: Summary): Ratios {
  const r: Ratios = { throughput: {} };
  const put = (k: Exclude<keyof Ratios, "throughput">, v: number | undefined) => {
    if (v !== undefined) r[k] = v;
  };
  put("p50us", div(s.p50us, ceiling?.p50us));
  put("p99us", div(s.p99us, ceiling?.p99us));
  put("bytesPerInflight", div(s.bytesPerInflight, ceiling?.bytesPerInflight));
  put("p50VsNatsRequest", div(s.p50us, nr?.p50us));
  put("p50VsNatsRequestNoAsyncTraces", div(s.p50us, nrq?.p50us));
  for (const [key, t] of Object.entries(s.throughput)) {
    const c = ceiling?.throughput[key];
    const calls = div(t.callsPerSec, c?.callsPerSec);
    const cpu = div(t.cpuUsPerCall, c?.cpuUsPerCall);
    r.throughput[key] = {
      ...(calls === undefined ? {} : { callsPerSec: calls }),
      ...(cpu === undefined ? {} : { cpuUsPerCall: cpu }),
    };
  }
  return r;
}

function version(cmd: string, argv: string[]): string {
  try {
    return execFileSync(cmd, argv, { encoding: "utf8" }).trim();
  } catch {
    return "unknown";
  }
}

const kib = (b: number) => (b >= 1024 ? `${Number((b / 1024).toFixed(1))} KiB` : `${b} B`);

/** The table, targets and JSON section of one payload set. */
function report(payload: PayloadName, impls: typeof IMPLS, runs: Map<string, WorkerResult[]>) {
  const perImpl = new Map(
    impls.map((i) => [
      i.name,
      (runs.get(i.name) ?? []).flatMap((r) => (r[payload] ? [r[payload]] : [])),
    ]),
  );
  const summaries = new Map(impls.map((i) => [i.name, summarise(perImpl.get(i.name) ?? [])]));
  const ceiling = summaries.get("handwritten");
  const natsRequest = summaries.get("nats-request");
  const natsRequestNoTraces = summaries.get("nats-request-noasynctraces");
  const ratioMap = new Map(
    impls.map((i) => [
      i.name,
      ratios(summaries.get(i.name) as Summary, ceiling, natsRequest, natsRequestNoTraces),
    ]),
  );
  const sample = [...perImpl.values()].flat()[0];
  const fmt = (v: number | undefined, r: number | undefined) =>
    v === undefined ? "–" : r === undefined ? `${v}` : `${v} (${r.toFixed(2)}×)`;
  const cols = (plan.throughput ?? [])
    .map(throughputKey)
    .filter((k) => [...summaries.values()].some((s) => s.throughput[k] !== undefined));
  const withMemory = [...summaries.values()].some((s) => s.heapMiB !== undefined);
  const head = [
    "implementation",
    "seq p50 µs",
    "seq p50 / nc.request()",
    "seq p99 µs",
    ...cols.map((c) => {
      const [n, b] = c.split("@");
      return b === undefined
        ? `calls/s ${n} in flight`
        : `calls/s ${n} in flight, ${kib(Number(b))}`;
    }),
    "CPU µs/call (64 in flight)",
    ...(withMemory
      ? [
          "heap B per call in flight (10k)",
          "heap growth after soak",
          "soak calls/s",
          "heap + buffers MiB after soak",
        ]
      : []),
  ];
  const lines = [`| ${head.join(" | ")} |`, `|${head.map(() => "---").join("|")}|`];
  for (const impl of impls) {
    const s = summaries.get(impl.name) as Summary;
    const r = ratioMap.get(impl.name) as Ratios;
    const cells = [
      impl.label,
      fmt(s.p50us, r.p50us),
      r.p50VsNatsRequest === undefined ? "–" : `${r.p50VsNatsRequest.toFixed(2)}×`,
      fmt(s.p99us, r.p99us),
      ...cols.map((c) => fmt(s.throughput[c]?.callsPerSec, r.throughput[c]?.callsPerSec)),
      fmt(s.throughput["64"]?.cpuUsPerCall, r.throughput["64"]?.cpuUsPerCall),
      ...(withMemory
        ? [
            fmt(s.bytesPerInflight, r.bytesPerInflight),
            s.soakGrowth === undefined ? "–" : `${(s.soakGrowth * 100).toFixed(1)}%`,
            `${s.soakCallsPerSec ?? "–"}`,
            s.heapMiB === undefined ? "–" : `${s.heapMiB} + ${s.arrayBuffersMiB}`,
          ]
        : []),
    ];
    lines.push(`| ${cells.join(" | ")} |`);
  }

  const check = (name: string, ok: boolean | undefined, text: string) =>
    `- ${ok === undefined ? "n/a" : ok ? "met" : "NOT met"}: ${name}: ${text}`;
  const r = summaries.get("ricochet");
  const rn = summaries.get("ricochet-nodedupe");
  const c64 = ceiling?.throughput["64"]?.callsPerSec;
  const share = (s: Summary | undefined) =>
    s?.throughput["64"] && c64 ? s.throughput["64"].callsPerSec / c64 : undefined;
  const p50 = (s: Summary | undefined) => div(s?.p50us, natsRequest?.p50us);
  // The targets of the performance issue: on every payload set, at 64 in flight.
  const peers = ["nats-request", "nats-request-noasynctraces", "services", "moleculer"]
    .map((name) => [name, share(summaries.get(name))] as const)
    .filter((p): p is readonly [string, number] => p[1] !== undefined);
  const best = peers.reduce<readonly [string, number] | undefined>(
    (a, p) => (a === undefined || p[1] > a[1] ? p : a),
    undefined,
  );
  const targets = [
    check(
      "ricochet default (memoryDedupe) at 64 in flight",
      share(r) === undefined ? undefined : (share(r) as number) >= 0.8,
      `${share(r)?.toFixed(2) ?? "?"}× the ceiling (target ≥ 0.8×)`,
    ),
    check(
      "ricochet default ahead of every peer at 64 in flight",
      share(r) === undefined || best === undefined ? undefined : (share(r) as number) > best[1],
      `${share(r)?.toFixed(2) ?? "?"}× against the best peer's ${best?.[1].toFixed(2) ?? "?"}× (${best?.[0] ?? "?"})`,
    ),
    check(
      "ricochet dedupe: false at 64 in flight",
      share(rn) === undefined ? undefined : (share(rn) as number) >= 0.85,
      `${share(rn)?.toFixed(2) ?? "?"}× the ceiling (target ≥ 0.85×)`,
    ),
    check(
      "zod's four parses: hand-written + zod vs the ceiling at 64 in flight",
      undefined,
      `${share(summaries.get("handwritten-zod"))?.toFixed(2) ?? "?"}× (no target; the most a path with ricochet's default validation could reach)`,
    ),
    check(
      "memoryDedupe's cost: ricochet default vs dedupe: false at 64 in flight",
      undefined,
      `${share(r) && share(rn) ? ((share(r) as number) / (share(rn) as number)).toFixed(2) : "?"}× (no target; for reference)`,
    ),
    ...(r?.heapMiB === undefined
      ? []
      : [
          check(
            "ricochet default: memory after the soak within the store's 128 MiB budget",
            r.heapMiB + (r.arrayBuffersMiB ?? 0) <= 128,
            `${r.heapMiB} MiB heap + ${r.arrayBuffersMiB} MiB buffers at ${r.soakCallsPerSec} calls/s`,
          ),
        ]),
    ...[
      ["ricochet default", r],
      ["ricochet dedupe: false", rn],
    ].map(([name, s]) =>
      check(
        `${name as string} sequential p50`,
        p50(s as Summary) === undefined ? undefined : (p50(s as Summary) as number) <= 1.1,
        `${p50(s as Summary)?.toFixed(2) ?? "?"}× nc.request() (target ≤ 1.1×); ${
          div((s as Summary | undefined)?.p50us, natsRequestNoTraces?.p50us)?.toFixed(2) ?? "?"
        }× nc.request() with noAsyncTraces`,
      ),
    ),
  ];
  const set = payloadSets[payload];
  const sizes = sample
    ? `request ${sample.requestBytes} B, response ${sample.responseBytes} B`
    : "";
  const text = [
    `### Payload set "${payload}": ${set.label} (${sizes})`,
    "",
    lines.join("\n"),
    "",
    "Targets:",
    ...targets,
  ].join("\n");
  const json = {
    label: set.label,
    requestBytes: sample?.requestBytes,
    responseBytes: sample?.responseBytes,
    summaries: Object.fromEntries(summaries),
    ratiosToCeiling: Object.fromEntries(ratioMap),
    targets,
    runs: Object.fromEntries(perImpl),
  };
  return { text, json };
}

async function main() {
  const server = await startNatsServer(hasTaskset ? { wrap: ["taskset", "-c", "0"] } : {});
  const peers = IMPLS.some((i) => i.name === "moleculer") ? peersReady() : false;
  const impls = IMPLS.filter((i) => i.name !== "moleculer" || peers);
  const runs = new Map<string, WorkerResult[]>(impls.map((i) => [i.name, []]));
  const failures: string[] = [];
  const started = Date.now();
  console.error(
    `payload sets: ${payloads.join(", ")}; ${impls.length} implementations × ${repeats} repeat(s)`,
  );
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
  const elapsedS = Math.round((Date.now() - started) / 1000);

  const sections = payloads.map((p) => ({ payload: p, ...report(p, impls, runs) }));
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
    full,
    payloads,
    elapsedS,
    argv: args,
  };
  const text = [
    `ricochet benchmark, ${new Date().toISOString()}, ${elapsedS} s`,
    `node ${env.node}, ${env.natsServer}, ${env.cpu} × ${env.cores}, ${env.pinned}; median of ${repeats}.`,
    "Every figure has, in brackets, its ratio to the hand-written ceiling in the same column and payload",
    'set (for latency, CPU and heap, lower is better). "seq" is the sequential phase: one call at a',
    `time, ${plan.latency?.count} calls after ${plan.latency?.warmup} warm-up; its p50 target compares with nc.request().`,
    "The noAsyncTraces row is nc.request() on a connection made with { noAsyncTraces: true } (no",
    "RequestError with the caller's stack built per request). Durable calls write each command to a",
    "JetStream stream before a responder pulls it: compare them with kvDedupe, not with core calls.",
    "[1] moleculer 0.14.36 is the newest moleculer that runs on Node 20 (0.15 requires Node >= 22).",
    "",
    ...sections.flatMap((s) => [s.text, ""]),
    ...(failures.length ? ["Failures:", ...failures.map((f) => `- ${f}`)] : []),
  ].join("\n");
  console.log(text);
  mkdirSync(`${here}results`, { recursive: true });
  const file = `${here}results/${new Date().toISOString().replace(/[:.]/g, "-")}.json`;
  writeFileSync(
    file,
    `${JSON.stringify(
      {
        env,
        plan,
        impls: impls.map(({ name, label }) => ({ name, label })),
        payloads: Object.fromEntries(sections.map((s) => [s.payload, s.json])),
        failures,
      },
      null,
      2,
    )}\n`,
  );
  console.log(`\nresults: ${file.slice(here.length - "bench/".length)}`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
