/**
 * What the chaos processes leave behind, and how the parent reads it back: one effect line per
 * handler execution, one answer line per reply a responder sent, one JSON record per call on the
 * client's side, and events (JSON lines on stdout) that every child prints.
 *
 * @module
 */
import { appendFileSync, existsSync, readFileSync } from "node:fs";

/** One execution of the handler: written by the handler itself, before it does its work. */
export interface EffectLine {
  readonly mode: string;
  readonly id: string;
  readonly pid: number;
  /** Epoch ms. */
  readonly at: number;
}

/** One reply a responder handed to its connection (progress messages excluded). */
export interface AnswerLine extends EffectLine {
  /** `ok`, or the NATS micro status of the error reply (`e503`). */
  readonly code: string;
}

/**
 * A call, as its client saw it: `started` when it begins; then either its outcome (`settled: true`),
 * or `settled: false` if the promise had not settled by its deadline plus the grace, and if it settles
 * later, a record with `late: true`. A call with no record after `started` (its client died or hung)
 * counts as never settled.
 */
export type CallRecord =
  | { readonly id: string; readonly t: number; readonly started: true }
  | {
      readonly id: string;
      /** Epoch ms at which the call started. */
      readonly t: number;
      readonly settled: true;
      readonly ms: number;
      /** `ok`, or the error code. */
      readonly outcome: string;
    }
  | { readonly id: string; readonly t: number; readonly settled: false }
  | { readonly id: string; readonly late: true; readonly ms: number; readonly outcome: string };

/** Events the children print on stdout, one JSON object a line. */
export type ChildEvent =
  | { readonly event: "ready"; readonly pid: number }
  | { readonly event: "started"; readonly at: number }
  | { readonly event: "reconnect"; readonly server: string; readonly at: number }
  | { readonly event: "disconnect"; readonly server: string; readonly at: number }
  | {
      readonly event: "done";
      readonly made: number;
      readonly throttled: number;
      readonly unsettled: number;
    };

/**
 * Appends one effect line (`<mode> <id> <pid> <epoch ms>`) with a single O_APPEND write, so lines from
 * several processes never interleave.
 */
export function appendEffect(file: string, line: EffectLine): void {
  appendFileSync(file, `${line.mode} ${line.id} ${line.pid} ${line.at}\n`, { flag: "a" });
}

/** Appends one answer line (`<mode> <id> <pid> <epoch ms> <code>`). */
export function appendAnswer(file: string, line: AnswerLine): void {
  appendFileSync(file, `${line.mode} ${line.id} ${line.pid} ${line.at} ${line.code}\n`, {
    flag: "a",
  });
}

/** Appends one call record as a JSON line. */
export function appendCall(file: string, record: CallRecord): void {
  appendFileSync(file, `${JSON.stringify(record)}\n`, { flag: "a" });
}

/** Prints one event on stdout for the parent. */
export function emit(event: ChildEvent): void {
  process.stdout.write(`${JSON.stringify(event)}\n`);
}

function lines(file: string): string[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, "utf8")
    .split("\n")
    .filter((l) => l.length > 0);
}

/** Reads the effect lines of `mode` (a torn last line, from a process killed mid-write, is skipped). */
export function readEffects(file: string, mode: string): EffectLine[] {
  const out: EffectLine[] = [];
  for (const l of lines(file)) {
    const [m, id, pid, at] = l.split(" ");
    if (m !== mode || id === undefined || pid === undefined || at === undefined) continue;
    out.push({ mode: m, id, pid: Number(pid), at: Number(at) });
  }
  return out;
}

/** Reads the answer lines of `mode`. */
export function readAnswers(file: string, mode: string): AnswerLine[] {
  const out: AnswerLine[] = [];
  for (const l of lines(file)) {
    const [m, id, pid, at, code] = l.split(" ");
    if (m !== mode || id === undefined || pid === undefined || at === undefined) continue;
    if (code === undefined) continue;
    out.push({ mode: m, id, pid: Number(pid), at: Number(at), code });
  }
  return out;
}

/** Reads a client's call records. */
export function readCalls(file: string): CallRecord[] {
  const out: CallRecord[] = [];
  for (const l of lines(file)) {
    try {
      out.push(JSON.parse(l) as CallRecord);
    } catch {
      // a torn line from a process killed mid-write
    }
  }
  return out;
}

/** Parses one stdout line of a child; undefined for anything that is not an event. */
export function parseEvent(line: string): ChildEvent | undefined {
  if (!line.startsWith("{")) return undefined;
  try {
    const value = JSON.parse(line) as { event?: unknown };
    return typeof value.event === "string" ? (value as ChildEvent) : undefined;
  } catch {
    return undefined;
  }
}
