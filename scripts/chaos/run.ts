/**
 * `npm run chaos`: the fault-injection run on a 3-node loopback NATS cluster (see README.md here).
 *
 *   npm run chaos -- [--seed <n>] [--seconds <per mode>] [--modes core-kv,core-memory,durable]
 *                    [--rate <calls/s>] [--max-seconds <hard limit>] [--json]
 *
 * Prints each mode's figures, writes them as JSON to `chaos-results/<timestamp>.json` (the raw files
 * beside it, in `chaos-results/<timestamp>/`), and exits 1 when a must-be-zero figure is not zero, 2
 * when the hard time limit (3 minutes by default) killed the run.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { runChaos } from "./chaos.js";
import { killAllChildren } from "./children.js";
import { isMode, MODES, type Mode } from "./config.js";
import { formatDefinitions, formatMode } from "./format.js";
import type { ModeFigures } from "./report.js";

const { values } = parseArgs({
  options: {
    seed: { type: "string" },
    seconds: { type: "string" },
    modes: { type: "string" },
    rate: { type: "string" },
    "max-seconds": { type: "string" },
    json: { type: "boolean", default: false },
  },
});

/** A positive number from a flag, or the default; exits with a message on anything else. */
function numberFlag(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0) {
    console.error(`--${name} must be a number >= 0, got ${value}`);
    process.exit(64);
  }
  return n;
}

const modes: Mode[] = (values.modes ?? MODES.join(",")).split(",").map((m) => {
  const mode = m.trim();
  if (!isMode(mode)) {
    console.error(`unknown mode ${mode}; the modes are ${MODES.join(", ")}`);
    process.exit(64);
  }
  return mode;
});
const seconds = numberFlag("seconds", values.seconds, 30);
const maxSeconds = numberFlag("max-seconds", values["max-seconds"], 180);
const seed = values.seed === undefined ? undefined : numberFlag("seed", values.seed, 0) >>> 0;
const rate = numberFlag("rate", values.rate, 100);
const json = values.json === true;

const stamp = new Date().toISOString().replace(/[:.]/g, "-");
const resultsDir = resolve("chaos-results");
const outDir = join(resultsDir, stamp);
const reportFile = join(resultsDir, `${stamp}.json`);
mkdirSync(outDir, { recursive: true });
/** Progress goes to stderr with --json, so that stdout is the JSON alone. */
const say = (line: string) => (json ? console.error(line) : console.log(line));
const done: ModeFigures[] = [];

// Per mode: ~10 s to start processes and drain, plus the load.
const estimate = modes.length * (seconds + 10) + 5;
if (estimate > maxSeconds) {
  say(
    `chaos: warning: ${modes.length} modes of ${seconds} s may not fit in --max-seconds ${maxSeconds}`,
  );
}
const hardTimer = setTimeout(() => {
  say(`chaos: HARD TIME LIMIT (${maxSeconds} s) reached: killing every child process and exiting`);
  for (const f of done) for (const line of formatMode(f)) say(line);
  writeFileSync(
    reportFile,
    JSON.stringify({ aborted: `hard time limit of ${maxSeconds} s`, modes: done }, null, 2),
  );
  killAllChildren();
  process.exit(2); // the cluster's exit handler kills its nodes
}, maxSeconds * 1_000);

const t0 = Date.now();
try {
  const report = await runChaos({
    modes,
    seconds,
    rate,
    outDir,
    log: say,
    onMode: (f) => {
      done.push(f);
      for (const line of formatMode(f)) say(line);
    },
    ...(seed === undefined ? {} : { seed }),
  });
  clearTimeout(hardTimer);
  writeFileSync(reportFile, JSON.stringify(report, null, 2));
  for (const line of formatDefinitions(report.timings.graceMs)) say(line);
  say(
    `chaos: ${((Date.now() - t0) / 1000).toFixed(1)} s; seed ${report.seed}; figures in ${reportFile}`,
  );
  if (json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  if (report.violations.length > 0) {
    say("chaos: FAILED:");
    for (const v of report.violations) say(`  ${v}`);
    process.exit(1);
  }
  say("chaos: passed (every must-be-zero figure is zero)");
  process.exit(0);
} catch (err) {
  clearTimeout(hardTimer);
  say(`chaos: the run failed: ${(err as Error)?.stack ?? String(err)}`);
  killAllChildren();
  process.exit(3);
}
