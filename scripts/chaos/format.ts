/**
 * Prints a run's figures: one compact block per mode, then the definitions and the verdict.
 *
 * @module
 */
import { type Mode, ONCE_MODES } from "./config.js";
import { DEFINITIONS, type Latency, type ModeFigures } from "./report.js";

const MAX_IDS = 20;

const ms = (v: number | undefined) => (v === undefined ? "-" : `${v} ms`);
const lat = (l: Latency) => `p50 ${ms(l.p50)}, p99 ${ms(l.p99)}, max ${ms(l.max)} (n=${l.n})`;
const ids = (list: readonly string[]) =>
  list.length === 0
    ? ""
    : `  [${list.slice(0, MAX_IDS).join(", ")}${list.length > MAX_IDS ? `, … ${list.length - MAX_IDS} more` : ""}]`;

/** The lines of one mode's block. */
export function formatMode(f: ModeFigures): string[] {
  const mustBeZero = (mode: Mode) => ONCE_MODES.includes(mode);
  const failed = Object.entries(f.failed)
    .sort((a, b) => b[1] - a[1])
    .map(([code, n]) => `${code} ${n}`)
    .join(", ");
  const failedTotal = Object.values(f.failed).reduce((a, b) => a + b, 0);
  const faults = `responder kills ${f.faultCounts["responder-kill"]}, node kills ${f.faultCounts["node-kill"]}, pauses ${f.faultCounts["responder-pause"]}`;
  const flag = (bad: boolean) => (bad ? "   <-- must be 0" : "");
  const lines = [
    `== ${f.mode} ==`,
    `  faults                 ${faults}${f.faults.some((x) => x.error) ? " (some did not recover: see the log)" : ""}`,
    `  calls made             ${f.calls}${f.throttled > 0 ? ` (load waited for a free slot ${f.throttled} times)` : ""}`,
    `  succeeded              ${f.succeeded}`,
    `  failed                 ${failedTotal}${failed === "" ? "" : ` (${failed})`}`,
    `  never settled          ${f.neverSettled}${f.settledLate > 0 ? ` (${f.settledLate} settled later)` : ""}${flag(f.neverSettled > 0)}${ids(f.neverSettledIds)}`,
    `  executions             ${f.executions}`,
    `  duplicate executions   ${f.duplicates}${mustBeZero(f.mode) ? flag(f.duplicates > 0) : " (no shared store: counted, not required to be 0)"}${ids(f.duplicateIds)}`,
    `  re-runs after kill     ${f.rerunsAfterKill}${ids(f.rerunsAfterKillIds.map((r) => `${r.id} (pid ${r.killedPid} killed ${r.effectToKillMs} ms after its effect)`))}`,
    `  latency during faults  ${lat(f.latencyDuringFaults)}`,
    `  latency, all calls     ${lat(f.latencyAll)}`,
    `  reconnects             client ${f.reconnects.client}, responders ${f.reconnects.responders}`,
  ];
  if (mustBeZero(f.mode)) {
    for (const d of f.duplicateExecutions.slice(0, MAX_IDS)) {
      lines.push(`    ${d.id} ran ${d.executions.length} times: ${d.executions.join(", ")}`);
    }
  }
  if (f.okWithoutEffect > 0) {
    lines.push(`  ok without execution   ${f.okWithoutEffect}   <-- unexpected`);
  }
  for (const e of f.harnessErrors) lines.push(`  harness error          ${e}`);
  return lines;
}

/** The definitions, as printed under the figures. */
export function formatDefinitions(graceMs: number): string[] {
  return [
    "definitions:",
    `  never settled: ${DEFINITIONS.neverSettled} (grace ${graceMs} ms)`,
    `  duplicate execution: ${DEFINITIONS.duplicate}`,
    `  re-run after kill: ${DEFINITIONS.rerunAfterKill}`,
    `  fault window: ${DEFINITIONS.faultWindow}`,
    `  latency during faults: ${DEFINITIONS.latencyDuringFaults}`,
  ];
}
