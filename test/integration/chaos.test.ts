/**
 * A short chaos run (`npm run chaos`, shortened) on a 3-node cluster of its own: in each mode, three
 * responder processes and a client process under a steady load, while the driver SIGKILLs a responder,
 * SIGKILLs a server node and pauses a responder (SIGSTOP past an attempt window). Every call must
 * settle, and with a shared dedupe store (core-kv, durable) no call may run twice.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { runChaos } from "../../scripts/chaos/chaos.js";
import { formatMode } from "../../scripts/chaos/format.js";

/** The shortest load that fits a pause (8.2 s) after the first second, with room to recover. */
const SECONDS_PER_MODE = 11;

describe("chaos: faults on a 3-node cluster under load", () => {
  const outDir = mkdtempSync(join(tmpdir(), "ricochet-chaos-"));
  let passed = false;
  afterAll(() => {
    // Keep the raw files (effects, answers, calls, child logs) of a failed run for inspection.
    if (passed) rmSync(outDir, { recursive: true, force: true });
    else console.log(`chaos: raw files kept in ${outDir}`);
  });

  it("every call settles in every mode, and no call runs twice with a shared dedupe store", async () => {
    // The progress and fault log, printed once the run is over (or failed).
    const lines: string[] = [];
    const report = await runChaos({
      seconds: SECONDS_PER_MODE,
      faults: { responderKills: 1, nodeKills: 1, pauses: 1 },
      outDir,
      log: (line) => lines.push(line),
      onMode: (figures) => lines.push(...formatMode(figures)),
      signal: AbortSignal.timeout(110_000),
    }).finally(() => console.log(lines.join("\n")));

    expect(report.modes.map((m) => m.mode)).toEqual(["core-kv", "core-memory", "durable"]);
    for (const m of report.modes) {
      for (const [kind, count] of Object.entries(m.faultCounts)) {
        expect(count, `${m.mode}: ${kind} faults injected`).toBeGreaterThanOrEqual(1);
      }
      expect(m.harnessErrors, `${m.mode}: harness errors`).toEqual([]);
      expect(m.neverSettled, `${m.mode}: never settled ${m.neverSettledIds.join(", ")}`).toBe(0);
      expect(m.calls, `${m.mode}: calls made`).toBeGreaterThan(SECONDS_PER_MODE * 50);
      expect(m.succeeded / m.calls, `${m.mode}: share of calls that succeeded`).toBeGreaterThan(
        0.9,
      );
    }
    for (const m of report.modes.filter((x) => x.mode !== "core-memory")) {
      expect(m.duplicates, `${m.mode}: duplicate executions ${m.duplicateIds.join(", ")}`).toBe(0);
    }
    expect(report.violations).toEqual([]);
    passed = true;
  }, 120_000);
});
