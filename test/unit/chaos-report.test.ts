/**
 * The chaos run's figures (scripts/chaos/report.ts): what counts as never settled, as a duplicate
 * execution, and as a re-run after a kill.
 */
import { describe, expect, it } from "vitest";
import type { FaultRecord } from "../../scripts/chaos/faults.js";
import type { CallRecord, EffectLine } from "../../scripts/chaos/records.js";
import { computeFigures, type ModeEvidence, violations } from "../../scripts/chaos/report.js";

const effect = (id: string, pid: number, at: number): EffectLine => ({
  mode: "core-kv",
  id,
  pid,
  at,
});
const kill = (pid: number, at: number): FaultRecord => ({
  kind: "responder-kill",
  target: "r1",
  pid,
  at,
  recoveredAt: at + 1_000,
  detail: "",
});
const evidence = (over: Partial<ModeEvidence>): ModeEvidence => ({
  mode: "core-kv",
  calls: [],
  effects: [],
  answers: [],
  faults: [],
  timeoutMs: 20_000,
  reconnects: { client: 0, responders: 0 },
  throttled: 0,
  harnessErrors: [],
  ...over,
});

describe("chaos figures", () => {
  it("counts a call as never settled when it was given up on, or has no end record at all", () => {
    const calls: CallRecord[] = [
      { id: "a", t: 0, started: true },
      { id: "a", t: 0, settled: true, ms: 5, outcome: "ok" },
      { id: "b", t: 1, started: true },
      { id: "b", t: 1, settled: false },
      { id: "b", late: true, ms: 30_000, outcome: "TIMEOUT" },
      { id: "c", t: 2, started: true },
      { id: "d", t: 3, started: true },
      { id: "d", t: 3, settled: true, ms: 9, outcome: "TIMEOUT" },
    ];
    const f = computeFigures(evidence({ calls, effects: [effect("a", 1, 1)] }));
    expect(f.calls).toBe(4);
    expect(f.succeeded).toBe(1);
    expect(f.failed).toEqual({ TIMEOUT: 1 });
    expect(f.neverSettledIds).toEqual(["b", "c"]);
    expect(f.settledLate).toBe(1);
    expect(violations([f], ["core-kv"])).toEqual(["core-kv: never settled = 2 (must be 0)"]);
  });

  it("tells a re-run after its executor was killed mid-call from a duplicate", () => {
    const f = computeFigures(
      evidence({
        effects: [
          // killed 10 ms after its effect line, before it answered: a re-run after kill
          effect("killed", 1, 100),
          effect("killed", 2, 17_000),
          // its executor answered before it was killed: a duplicate
          effect("answered", 1, 105),
          effect("answered", 2, 9_000),
          // its executor was never killed: a duplicate
          effect("twice", 3, 200),
          effect("twice", 2, 7_000),
        ],
        answers: [{ mode: "core-kv", id: "answered", pid: 1, at: 106, code: "ok" }],
        faults: [kill(1, 110)],
      }),
    );
    expect(f.rerunsAfterKillIds.map((r) => [r.id, r.killedPid, r.effectToKillMs])).toEqual([
      ["killed", 1, 10],
    ]);
    expect([...f.duplicateIds].sort()).toEqual(["answered", "twice"]);
    expect(violations([f], ["core-kv"])).toEqual(["core-kv: duplicate executions = 2 (must be 0)"]);
    expect(violations([{ ...f, mode: "core-memory" }], ["core-kv"])).toEqual([]);
  });
});
