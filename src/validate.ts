/**
 * Runs a zod schema on a value at one edge of a call, without letting a `ZodError` escape.
 *
 * @module
 */
import type { $ZodType } from "zod/v4/core";
import * as core from "zod/v4/core";

/** One validation problem, in a form that survives JSON. */
export interface ValidationIssue {
  /** Where in the value: keys and indexes from the root. */
  path: Array<string | number>;
  /** What is wrong. */
  message: string;
  /** zod's issue code, e.g. `invalid_type`. */
  code: string;
}

/** The outcome of {@link validate}. */
export type Validation = { ok: true; value: unknown } | { ok: false; issues: ValidationIssue[] };

function toIssues(issues: ReadonlyArray<{ path: PropertyKey[]; message: string; code: string }>) {
  return issues.map((i) => ({
    path: i.path.map((p) => (typeof p === "number" ? p : String(p))),
    message: i.message,
    code: i.code,
  }));
}

/** Each schema ricochet has validated with, and the compiled twin it validates with. */
const twins = new WeakMap<$ZodType, $ZodType>();

/** The zod release whose `z.compile` ricochet was checked with; older ones validate uncompiled. */
const COMPILE_SINCE = { major: 4, minor: 6 };

/**
 * The schema to validate with in place of `schema`: zod's compiled twin of it (`z.compile`), which
 * gives the same results and the same issues several times faster, with far less garbage (on the
 * bench's 200-byte order, 0.06 µs a parse instead of 0.88 µs). On a value that fails, the twin hands
 * over to the schema's own parser to describe what is wrong, so a refinement or transform may run twice
 * on it (never on a value that passes). The schema itself is used when zod cannot compile it (async
 * refinements, recursion, no `new Function`), when the application set `z.config({ jitless: true })`,
 * and with a zod older than 4.6. Compiled once per schema, on first use; `createClient` and
 * `createResponder` compile their contract's schemas up front, so no call pays for it.
 */
export function compiled(schema: $ZodType): $ZodType {
  let twin = twins.get(schema);
  if (twin === undefined) {
    const compile = compiler();
    twin = compile === undefined ? schema : compile(schema);
    twins.set(schema, twin);
  }
  return twin;
}

/** Compiles, now, every schema of a method: its request, its response, and its errors' details. */
export function compileMethod(method: {
  request: $ZodType;
  response: $ZodType;
  errors: Record<string, $ZodType>;
}): void {
  compiled(method.request);
  compiled(method.response);
  for (const details of Object.values(method.errors)) compiled(details);
}

/**
 * zod's `compile`, when this zod has one ricochet was checked with and the application allows
 * generated code; otherwise `undefined`.
 */
function compiler(): ((schema: $ZodType) => $ZodType) | undefined {
  const { compile, version } = core as {
    compile?: (schema: $ZodType) => $ZodType;
    version?: { major: number; minor: number };
  };
  if (typeof compile !== "function" || version === undefined) return undefined;
  if (core.globalConfig.jitless === true) return undefined;
  const checked =
    version.major > COMPILE_SINCE.major ||
    (version.major === COMPILE_SINCE.major && version.minor >= COMPILE_SINCE.minor);
  return checked ? compile : undefined;
}

/**
 * Parses `value` with `schema` (through its {@link compiled} twin): synchronously when the schema
 * allows it (the common case), otherwise with zod's async parser (schemas with async refinements or
 * transforms). Never throws or rejects.
 */
export function validate(given: $ZodType, value: unknown): Validation | Promise<Validation> {
  const schema = compiled(given);
  try {
    return outcome(core.safeParse(schema, value));
  } catch (err) {
    if (!(err instanceof core.$ZodAsyncError)) return threw(err);
    return core.safeParseAsync(schema, value).then(outcome, threw);
  }
}

/** A zod parse result as a {@link Validation}. */
function outcome(r: ReturnType<typeof core.safeParse>): Validation {
  return r.success ? { ok: true, value: r.data } : { ok: false, issues: toIssues(r.error.issues) };
}

/** A schema whose refinement or transform throws fails validation instead of escaping as a raw error. */
function threw(err: unknown): Validation {
  const message = err instanceof Error ? err.message : String(err);
  return {
    ok: false,
    issues: [{ path: [], message: `the schema threw: ${message}`, code: "schema_threw" }],
  };
}

/** Formats issues for an error message: `amountCents: Too small: expected number to be >0`. */
export function describeIssues(issues: ValidationIssue[]): string {
  return issues
    .slice(0, 3)
    .map((i) => (i.path.length ? `${i.path.join(".")}: ${i.message}` : i.message))
    .join("; ");
}
