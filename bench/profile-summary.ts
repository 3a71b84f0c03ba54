/**
 * Top self-time frames of a V8 `.cpuprofile`, with dist/ frames mapped back to src/ through their
 * source maps, and self time grouped: zod, JSON encode/decode, NATS headers, the rest of nats.js,
 * ricochet's own code, Node internals, GC and idle.
 *
 *   npx tsx bench/profile-summary.ts <file.cpuprofile> [top] [fromUs toUs]
 */
import { existsSync, readFileSync } from "node:fs";
import { SourceMap } from "node:module";
import { relative } from "node:path";
import { fileURLToPath } from "node:url";

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
}
interface Profile {
  startTime: number;
  endTime: number;
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const root = fileURLToPath(new URL("..", import.meta.url));
const maps = new Map<string, SourceMap | undefined>();

function sourceMap(url: string): SourceMap | undefined {
  if (!maps.has(url)) {
    let map: SourceMap | undefined;
    try {
      const file = `${fileURLToPath(url)}.map`;
      if (existsSync(file)) map = new SourceMap(JSON.parse(readFileSync(file, "utf8")));
    } catch {
      map = undefined;
    }
    maps.set(url, map);
  }
  return maps.get(url);
}

/** `file:line` (1-based), relative to the repository, through the source map where there is one. */
function where(f: CallFrame): string {
  if (!f.url) return "(native)";
  if (f.url.startsWith("file://") && f.url.includes("/dist/")) {
    const e = sourceMap(f.url)?.findEntry(f.lineNumber, f.columnNumber) as
      | { originalSource?: string; originalLine?: number }
      | undefined;
    if (e?.originalSource !== undefined && e.originalLine !== undefined) {
      const src = e.originalSource.startsWith("file://")
        ? fileURLToPath(e.originalSource)
        : new URL(e.originalSource, f.url).pathname;
      return `${relative(root, src)}:${e.originalLine + 1}`;
    }
  }
  const path = f.url.startsWith("file://") ? relative(root, fileURLToPath(f.url)) : f.url;
  const modules = path.lastIndexOf("node_modules/");
  return `${modules > 0 ? path.slice(modules) : path}:${f.lineNumber + 1}`;
}

const NATIVE_WRITES = new Set(["writeBuffer", "writev", "writeUtf8String", "encodeUtf8String"]);
const JSON_FUNCTIONS = new Set(["encodeBody", "decodeBody", "stringify", "parse", "json"]);

function category(fn: string, at: string): string {
  if (fn === "(idle)") return "idle";
  if (fn === "(garbage collector)") return "GC";
  if (fn === "(program)" || fn === "(root)") return "V8 (program)";
  if (at.includes("node_modules/zod/")) return "zod parse";
  if (at.startsWith("src/protocol.ts") && JSON_FUNCTIONS.has(fn)) return "JSON encode/decode";
  if (at.startsWith("node:internal/encoding")) return "JSON encode/decode (TextEncoder/Decoder)";
  if (at === "(native)" && (fn === "stringify" || fn === "parse")) return "JSON encode/decode";
  if (at === "(native)" && NATIVE_WRITES.has(fn)) return "Node socket writes (native)";
  if (at === "(native)" && fn === "runMicrotasks") return "V8 microtask queue";
  if (at.includes("@nats-io/nats-core/lib/headers.js")) return "NATS headers (nats.js headers.js)";
  if (at.includes("@nats-io/nats-core/lib/parser.js") && fn === "processHeaderMsgArgs")
    return "NATS headers (nats.js HMSG parse)";
  if (at.startsWith("src/transport/nats-headers.ts") || at.startsWith("src/transport/headers.ts"))
    return "NATS headers (ricochet's header code)";
  if (at.includes("@nats-io/nats-core/lib/codec") || (at.includes("@nats-io") && fn === "json"))
    return "JSON encode/decode";
  if (at.includes("@nats-io/")) return "nats.js core (parser, protocol, writes)";
  if (at.startsWith("src/")) return "ricochet own code";
  if (at.startsWith("bench/payload.ts")) return "bench handler (payload.respond)";
  if (at.includes("node_modules/")) return "other dependencies";
  if (at.startsWith("node:")) return "Node internals (net, streams, timers, crypto)";
  return "other";
}

/**
 * `window`: [from, to] in µs on the profile's clock (`process.hrtime` / 1000); only the samples inside
 * count. Without it, the whole profile.
 */
export function summariseProfile(
  file: string,
  top = 25,
  window?: [number, number],
  calls?: number,
): string {
  const p = JSON.parse(readFileSync(file, "utf8")) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  const [from, to] = window ?? [Number.NEGATIVE_INFINITY, Number.POSITIVE_INFINITY];
  if (window && (from < p.startTime || to > p.endTime))
    throw new Error(`window ${from}..${to} outside the profile's ${p.startTime}..${p.endTime}`);
  // timeDeltas[i] is the time before sample i; attribute each interval to the sample that ends it.
  let t = p.startTime;
  for (let i = 0; i < p.samples.length; i++) {
    const dt = Math.max(0, p.timeDeltas[i] ?? 0);
    t += dt;
    if (t < from || t > to) continue;
    const id = p.samples[i] as number;
    self.set(id, (self.get(id) ?? 0) + dt);
  }
  const frames = new Map<string, { fn: string; at: string; us: number; cat: string }>();
  const cats = new Map<string, number>();
  let total = 0;
  for (const [id, us] of self) {
    const f = (byId.get(id) as ProfileNode).callFrame;
    const fn = f.functionName || "(anonymous)";
    const at = where(f);
    const cat = category(fn, at);
    const key = `${fn} ${at}`;
    const e = frames.get(key) ?? { fn, at, us: 0, cat };
    e.us += us;
    frames.set(key, e);
    cats.set(cat, (cats.get(cat) ?? 0) + us);
    total += us;
  }
  const idle = cats.get("idle") ?? 0;
  const busy = total - idle;
  const pct = (us: number, of: number) => `${((100 * us) / of).toFixed(1)}%`;
  const perCall = (us: number) => (calls ? ` | ${(us / calls).toFixed(2)}` : "");
  const lines = [
    `${file}: ${(total / 1000).toFixed(0)} ms sampled${window ? " in the window" : ""}, ${pct(idle, total)} idle; percentages of busy (non-idle) time${calls ? `; busy ${(busy / calls).toFixed(1)} µs per call` : ""}.`,
    "",
    `| group | self ms | % busy |${calls ? " µs/call |" : ""}`,
    `|---|---:|---:|${calls ? "---:|" : ""}`,
    ...[...cats]
      .filter(([c]) => c !== "idle")
      .sort((a, b) => b[1] - a[1])
      .map(([c, us]) => `| ${c} | ${(us / 1000).toFixed(0)} | ${pct(us, busy)}${perCall(us)} |`),
    "",
    `| # | function | file:line | self ms | % busy | group |`,
    "|---:|---|---|---:|---:|---|",
    ...[...frames.values()]
      .filter((f) => f.cat !== "idle")
      .sort((a, b) => b.us - a.us)
      .slice(0, top)
      .map(
        (f, i) =>
          `| ${i + 1} | ${f.fn} | ${f.at} | ${(f.us / 1000).toFixed(0)} | ${pct(f.us, busy)} | ${f.cat} |`,
      ),
  ];
  return lines.join("\n");
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const [file, top, from, to] = process.argv.slice(2);
  if (!file) throw new Error("usage: profile-summary.ts <file.cpuprofile> [top] [fromUs toUs]");
  const window: [number, number] | undefined = from && to ? [Number(from), Number(to)] : undefined;
  console.log(summariseProfile(file, top ? Number(top) : 25, window));
}
