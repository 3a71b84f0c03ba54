/**
 * The figures of one mode, computed from what the processes left behind: the client's call records,
 * the effect and answer lines of the responders, the fault log and the reconnect counts.
 *
 * @module
 */
import type { Mode } from "./config.js";
import type { FaultKind, FaultRecord } from "./faults.js";
import type { AnswerLine, CallRecord, EffectLine } from "./records.js";

/** Latency percentiles of a set of calls, in ms (undefined when the set is empty). */
export interface Latency {
  readonly n: number;
  readonly p50: number | undefined;
  readonly p99: number | undefined;
  readonly max: number | undefined;
}

/** An id run again after its earlier executor was SIGKILLed mid-call. */
export interface RerunAfterKill {
  readonly id: string;
  /** The executions, in order: `pid@epoch ms`. */
  readonly executions: readonly string[];
  /** The killed executor, and how long after its effect line the kill came. */
  readonly killedPid: number;
  readonly effectToKillMs: number;
}

/** What one mode did. */
export interface ModeFigures {
  readonly mode: Mode;
  /** Calls the client started. */
  readonly calls: number;
  readonly succeeded: number;
  /** Settled with an error, by code. */
  readonly failed: Readonly<Record<string, number>>;
  /** Not settled within deadline + grace. */
  readonly neverSettled: number;
  readonly neverSettledIds: readonly string[];
  /** Of those, settled later after all. */
  readonly settledLate: number;
  /** Handler executions (effect lines). */
  readonly executions: number;
  /** Ids executed more than once, except the re-runs after a kill. */
  readonly duplicates: number;
  readonly duplicateIds: readonly string[];
  /** Each duplicate's executions, in order: `pid@epoch ms`, with ` (killed +<ms>)` when the driver killed that process later. */
  readonly duplicateExecutions: readonly {
    readonly id: string;
    readonly executions: readonly string[];
  }[];
  readonly rerunsAfterKill: number;
  readonly rerunsAfterKillIds: readonly RerunAfterKill[];
  /** Calls that succeeded although no execution of their id was seen (should never happen). */
  readonly okWithoutEffect: number;
  /** Calls started inside a fault window (see {@link DEFINITIONS}), and all settled calls. */
  readonly latencyDuringFaults: Latency;
  readonly latencyAll: Latency;
  readonly reconnects: { readonly client: number; readonly responders: number };
  /** Faults injected, by kind. */
  readonly faultCounts: Readonly<Record<FaultKind, number>>;
  readonly faults: readonly FaultRecord[];
  /** Load ticks that found `maxInFlight` calls in flight and waited. */
  readonly throttled: number;
  /** Problems of the harness itself (a child that did not finish), not of ricochet. */
  readonly harnessErrors: readonly string[];
}

/** The definitions the figures rest on, printed with every run. */
export const DEFINITIONS = {
  neverSettled:
    "a call whose promise had not settled (resolved or rejected) within its deadline + grace",
  duplicate: "a call id with more than one effect line (one line per handler execution)",
  rerunAfterKill:
    "a duplicate whose every earlier execution ran on a responder the driver SIGKILLed after that " +
    "execution's effect line, before that responder recorded the id's result in the shared dedupe " +
    "store (or, with the default store, answered it), and within the call's deadline or a minute " +
    "(the handler ran, but its process died before its result was recorded)",
  faultWindow:
    "from a fault's injection (SIGKILL, SIGSTOP) until it recovered (the process restarted and " +
    "printed ready / the node restarted and every node agrees on a meta leader / SIGCONT sent)",
  latencyDuringFaults:
    "wall time from call start to settle, of the settled calls started inside a fault window",
} as const;

/** Nearest-rank percentile of sorted values. */
function percentile(sorted: readonly number[], p: number): number | undefined {
  if (sorted.length === 0) return undefined;
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[Math.min(rank, sorted.length) - 1];
}

function latency(values: number[]): Latency {
  const sorted = [...values].sort((a, b) => a - b);
  return {
    n: sorted.length,
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    max: sorted[sorted.length - 1],
  };
}

/** Everything a mode's figures are computed from. */
export interface ModeEvidence {
  readonly mode: Mode;
  readonly calls: readonly CallRecord[];
  readonly effects: readonly EffectLine[];
  readonly answers: readonly AnswerLine[];
  readonly faults: readonly FaultRecord[];
  readonly timeoutMs: number;
  readonly reconnects: { readonly client: number; readonly responders: number };
  readonly throttled: number;
  readonly harnessErrors: readonly string[];
}

const groupBy = <T>(items: readonly T[], key: (t: T) => string) => {
  const out = new Map<string, T[]>();
  for (const item of items) {
    const k = key(item);
    const list = out.get(k);
    if (list === undefined) out.set(k, [item]);
    else list.push(item);
  }
  return out;
};

/** Computes the figures of one mode. */
export function computeFigures(evidence: ModeEvidence): ModeFigures {
  const { calls, effects, answers, faults, timeoutMs } = evidence;
  const started = calls.filter((c) => "started" in c);
  const ends = new Map<string, CallRecord>();
  for (const c of calls) if ("settled" in c && !ends.has(c.id)) ends.set(c.id, c);
  const settled = [...ends.values()].filter(
    (c): c is Extract<CallRecord, { settled: true }> => "settled" in c && c.settled,
  );
  // Given up on after deadline + grace, or no end record at all (the client died or hung).
  const unsettled = started.filter((c) => {
    const end = ends.get(c.id);
    return end === undefined || ("settled" in end && !end.settled);
  });
  const lateIds = new Set(calls.filter((c) => "late" in c).map((c) => c.id));
  const failed: Record<string, number> = {};
  for (const c of settled) if (c.outcome !== "ok") failed[c.outcome] = (failed[c.outcome] ?? 0) + 1;

  const effectsById = groupBy(effects, (e) => e.id);
  for (const list of effectsById.values()) list.sort((a, b) => a.at - b.at);
  const answersByIdPid = groupBy(answers, (a) => `${a.id} ${a.pid}`);
  const recordedMode = answers.some((a) => a.code === "recorded");
  const kills = faults.filter((f) => f.kind === "responder-kill" && f.pid !== undefined);

  /** The driver's SIGKILL of `e`'s process while `e` was in flight, if there was one. */
  const killedMidCall = (e: EffectLine) => {
    // Within the deadline, or the minute kvDedupe keeps retrying a record through an outage.
    const horizon = Math.max(timeoutMs, 60_000);
    const kill = kills.find((k) => k.pid === e.pid && k.at >= e.at && k.at - e.at <= horizon);
    if (kill === undefined) return undefined;
    // With a shared store, "done" is its record (a reply may go out before a slow store has it);
    // with the default store, the answer.
    const doneBefore = (answersByIdPid.get(`${e.id} ${e.pid}`) ?? []).some(
      (a) => a.at <= kill.at && (!recordedMode || a.code === "recorded"),
    );
    return doneBefore ? undefined : kill;
  };

  const duplicateIds: string[] = [];
  const duplicateExecutions: { id: string; executions: string[] }[] = [];
  const describe = (e: EffectLine) => {
    const k = kills.find((x) => x.pid === e.pid && x.at >= e.at);
    return `${e.pid}@${e.at}${k === undefined ? "" : ` (killed +${k.at - e.at} ms)`}`;
  };
  const reruns: RerunAfterKill[] = [];
  for (const [id, list] of effectsById) {
    if (list.length < 2) continue;
    const earlier = list.slice(0, -1);
    const killsOfEarlier = earlier.map(killedMidCall);
    const first = earlier[0] as EffectLine;
    const firstKill = killsOfEarlier[0];
    if (firstKill !== undefined && killsOfEarlier.every((k) => k !== undefined)) {
      reruns.push({
        id,
        executions: list.map((e) => `${e.pid}@${e.at}`),
        killedPid: first.pid,
        effectToKillMs: firstKill.at - first.at,
      });
    } else {
      duplicateIds.push(id);
      duplicateExecutions.push({ id, executions: list.map(describe) });
    }
  }

  const ok = settled.filter((c) => c.outcome === "ok");
  const windows = faults.map((f) => [f.at, f.recoveredAt ?? Number.POSITIVE_INFINITY] as const);
  const inFault = (t: number) => windows.some(([from, to]) => t >= from && t <= to);
  const faultCounts: Record<FaultKind, number> = {
    "responder-kill": 0,
    "node-kill": 0,
    "responder-pause": 0,
  };
  for (const f of faults) faultCounts[f.kind]++;

  return {
    mode: evidence.mode,
    calls: started.length,
    succeeded: ok.length,
    failed,
    neverSettled: unsettled.length,
    neverSettledIds: unsettled.map((c) => c.id),
    settledLate: unsettled.filter((c) => lateIds.has(c.id)).length,
    executions: effects.length,
    duplicates: duplicateIds.length,
    duplicateIds,
    duplicateExecutions,
    rerunsAfterKill: reruns.length,
    rerunsAfterKillIds: reruns,
    okWithoutEffect: ok.filter((c) => !effectsById.has(c.id)).length,
    latencyDuringFaults: latency(settled.filter((c) => inFault(c.t)).map((c) => c.ms)),
    latencyAll: latency(settled.map((c) => c.ms)),
    reconnects: evidence.reconnects,
    faultCounts,
    faults,
    throttled: evidence.throttled,
    harnessErrors: evidence.harnessErrors,
  };
}

/**
 * The must-be-zero figures that are not zero, as sentences: never-settled calls in every mode, and
 * duplicate executions in the modes with a shared dedupe store; also harness errors.
 */
export function violations(figures: readonly ModeFigures[], onceModes: readonly Mode[]): string[] {
  const out: string[] = [];
  for (const f of figures) {
    if (f.neverSettled > 0) {
      out.push(`${f.mode}: never settled = ${f.neverSettled} (must be 0)`);
    }
    if (onceModes.includes(f.mode) && f.duplicates > 0) {
      out.push(`${f.mode}: duplicate executions = ${f.duplicates} (must be 0)`);
    }
    for (const e of f.harnessErrors) out.push(`${f.mode}: harness: ${e}`);
  }
  return out;
}
