/**
 * Runs a zod schema on a value at one edge of a call, without letting a `ZodError` escape.
 *
 * @module
 */
import { $ZodAsyncError, type $ZodType, safeParse, safeParseAsync } from "zod/v4/core";

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

/**
 * Parses `value` with `schema`: synchronously when the schema allows it (the common case), otherwise
 * with zod's async parser (schemas with async refinements or transforms). Never throws or rejects.
 */
export function validate(schema: $ZodType, value: unknown): Validation | Promise<Validation> {
  try {
    const r = safeParse(schema, value);
    return r.success
      ? { ok: true, value: r.data }
      : { ok: false, issues: toIssues(r.error.issues) };
  } catch (err) {
    if (!(err instanceof $ZodAsyncError)) return threw(err);
    return safeParseAsync(schema, value).then(
      (r) =>
        r.success ? { ok: true, value: r.data } : { ok: false, issues: toIssues(r.error.issues) },
      threw,
    );
  }
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
