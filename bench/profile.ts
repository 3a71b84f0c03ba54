/**
 * CPU profile of ricochet's default setup (zod on both sides, memoryDedupe), with the client and the
 * responder in separate processes, each under `node --cpu-prof`, against a nats-server this script
 * starts (pinned to CPU 0 with `taskset` when it can; both profiled processes on CPU 1, as in the bench).
 * Then prints the top self-time frames of each side, grouped (see bench/profile-summary.ts).
 *
 *   npm run build && npx tsx --tsconfig bench/tsconfig.json bench/profile.ts \
 *     [--payload nested] [--calls 50000] [--warmup 2000] [--inflight 64] [--out /tmp/perf] [--top 25]
 *
 * ricochet resolves to dist/ (as in the bench), whose source maps map frames back to src/.
 */
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { connect } from "@nats-io/transport-node";
import { createClient, createResponder, natsTransport } from "ricochet";
import { startNatsServer } from "../test/support/nats-server.js";
import { contractFor } from "./impls/ricochet.js";
import { getPayloadSet, type PayloadName } from "./payload.js";
import { summariseProfile } from "./profile-summary.js";

const here = fileURLToPath(new URL(".", import.meta.url));

interface Config {
  payload: PayloadName;
  calls: number;
  /** Sequential calls before the measured window. */
  warmup: number;
  inflight: number;
  /** Upper bound on the client's run, whatever `calls` says. */
  maxMs: number;
}

/** The responder side: serves until its stdin closes, then stops and exits (writing its profile). */
async function responder(servers: string, config: Config) {
  const payload = getPayloadSet(config.payload);
  const nc = await connect({ servers });
  const r = createResponder(
    contractFor(payload),
    // Same handler shape as bench/impls/ricochet.ts (async, the gate never held here).
    { charge: async (req) => payload.respond(req) },
    { transport: natsTransport(nc), concurrency: 20_000, maxQueue: 20_000 },
  );
  await r.start();
  await nc.flush();
  process.stdout.write("ready\n");
  const stop = async () => {
    await r.stop();
    await nc.close();
    process.exit(0);
  };
  process.stdin.on("end", () => void stop());
  process.stdin.resume();
  setTimeout(() => void stop(), config.maxMs + 60_000).unref();
}

/** The client side: `calls` calls at `inflight` in flight (bounded by `maxMs`), then exits. */
async function client(servers: string, config: Config) {
  const payload = getPayloadSet(config.payload);
  const nc = await connect({ servers });
  const rpc = createClient(contractFor(payload), { transport: natsTransport(nc) });
  const req = payload.makeRequest();
  for (let i = 0; i < config.warmup; i++) await rpc.charge(req);
  // The measured window, on the clock --cpu-prof stamps samples with (monotonic, µs): the summary
  // counts only the samples inside it, leaving out start-up (module loading) and the warm-up.
  const windowStart = Number(process.hrtime.bigint() / 1000n);
  let left = config.calls;
  let done = 0;
  let failed = 0;
  const t0 = performance.now();
  const until = t0 + config.maxMs;
  const cpu0 = process.cpuUsage();
  const worker = async () => {
    while (left-- > 0 && performance.now() < until) {
      try {
        await rpc.charge(req);
        done++;
      } catch {
        failed++;
      }
    }
  };
  await Promise.all(Array.from({ length: config.inflight }, worker));
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  const windowEnd = Number(process.hrtime.bigint() / 1000n);
  await rpc.close();
  await nc.close();
  process.stdout.write(
    `${JSON.stringify({
      done,
      failed,
      ms: Math.round(ms),
      callsPerSec: Math.round(done / (ms / 1000)),
      clientCpuUsPerCall: Number(((cpu.user + cpu.system) / done).toFixed(2)),
      windowUs: [windowStart, windowEnd],
    })}\n`,
  );
  process.exit(0);
}

function spawnRole(
  role: "responder" | "client",
  servers: string,
  config: Config,
  out: string,
  pinned: boolean,
) {
  // One directory per role: --cpu-prof writes a profile per thread (tsx's loader runs in a worker),
  // named CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile; the main thread is thread 0.
  const dir = `${out}/${role}-${config.payload}`;
  rmSync(dir, { recursive: true, force: true });
  const node = [
    process.execPath,
    "--cpu-prof",
    "--cpu-prof-dir",
    dir,
    "--import",
    "tsx",
    `${here}profile.ts`,
    role,
    servers,
    JSON.stringify(config),
  ];
  const [cmd, ...rest] = pinned ? ["taskset", "-c", "1", ...node] : node;
  const child = spawn(cmd as string, rest, {
    env: { ...process.env, TSX_TSCONFIG_PATH: `${here}tsconfig.json` },
    stdio: ["pipe", "pipe", "inherit"],
  });
  const killer = setTimeout(() => child.kill("SIGKILL"), config.maxMs + 90_000);
  let out_ = "";
  const lines: Array<(line: string) => void> = [];
  child.stdout.on("data", (d) => {
    out_ += d;
    let i = out_.indexOf("\n");
    while (i >= 0) {
      const line = out_.slice(0, i);
      out_ = out_.slice(i + 1);
      for (const l of lines) l(line);
      i = out_.indexOf("\n");
    }
  });
  const exited = new Promise<number | null>((resolve) =>
    child.on("exit", (code) => {
      clearTimeout(killer);
      resolve(code);
    }),
  );
  const line = (timeoutMs: number) =>
    new Promise<string>((resolve, reject) => {
      const t = setTimeout(
        () => reject(new Error(`${role}: no output in ${timeoutMs} ms`)),
        timeoutMs,
      );
      lines.push((l) => {
        clearTimeout(t);
        resolve(l);
      });
    });
  const file = () => {
    const main = readdirSync(dir).find((f) => f.split(".")[4] === "0");
    if (!main) throw new Error(`${role}: no main-thread profile in ${dir}`);
    return `${dir}/${main}`;
  };
  return { child, exited, line, file };
}

async function main() {
  const args = process.argv.slice(2);
  const option = (name: string, fallback: string) =>
    args.includes(name) ? (args[args.indexOf(name) + 1] ?? fallback) : fallback;
  const config: Config = {
    payload: getPayloadSet(option("--payload", "nested")).name,
    calls: Number(option("--calls", "50000")),
    warmup: Number(option("--warmup", "2000")),
    inflight: Number(option("--inflight", "64")),
    maxMs: 120_000,
  };
  const out = option("--out", "/tmp/perf");
  const top = Number(option("--top", "25"));
  mkdirSync(out, { recursive: true });
  const pinned = spawnSync("taskset", ["-c", "0", "true"]).status === 0 && cpus().length >= 2;
  const server = await startNatsServer(pinned ? { wrap: ["taskset", "-c", "0"] } : {});
  let stats = "";
  try {
    const r = spawnRole("responder", server.url, config, out, pinned);
    if ((await r.line(60_000)) !== "ready") throw new Error("responder did not start");
    const c = spawnRole("client", server.url, config, out, pinned);
    stats = await c.line(config.maxMs + 60_000);
    const { windowUs: window, done } = JSON.parse(stats) as {
      windowUs: [number, number];
      done: number;
    };
    await c.exited;
    r.child.stdin.end();
    const code = await r.exited;
    if (code !== 0) throw new Error(`responder exited with ${code}`);
    const text = [
      `profile: ricochet default, payload ${config.payload}, ${config.calls} calls at ${config.inflight} in flight after ${config.warmup} sequential warm-up calls; client: ${stats}`,
      "Only samples inside the client's measured window count (no start-up, no warm-up).",
      "",
      "## client",
      summariseProfile(c.file(), top, window, done),
      "",
      "## responder",
      summariseProfile(r.file(), top, window, done),
    ].join("\n");
    writeFileSync(`${out}/profile-${config.payload}.txt`, `${text}\n`);
    console.log(text);
  } finally {
    await server[Symbol.asyncDispose]();
  }
}

const [role, servers, configJson] = process.argv.slice(2);
if ((role === "responder" || role === "client") && servers && configJson) {
  const config = JSON.parse(configJson) as Config;
  (role === "responder" ? responder : client)(servers, config).catch((err) => {
    console.error(err);
    process.exit(1);
  });
} else {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
