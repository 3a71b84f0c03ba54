/**
 * NATS subject matching for the in-memory transport: `*` matches one token, `>` the rest.
 *
 * @module
 */

/** Whether `subject` matches the subscription `pattern`. */
export function subjectMatches(pattern: string, subject: string): boolean {
  if (pattern === subject) return true;
  const p = pattern.split(".");
  const s = subject.split(".");
  for (let i = 0; i < p.length; i++) {
    const token = p[i];
    if (token === ">") return s.length > i;
    if (i >= s.length) return false;
    if (token !== "*" && token !== s[i]) return false;
  }
  return p.length === s.length;
}

const TOKEN = /^[^\s.*>]+$/;

/** Whether `subject` is a valid subject to publish to: dot-separated, non-empty tokens, no wildcards. */
export function isValidPublishSubject(subject: string): boolean {
  return subject.split(".").every((t) => TOKEN.test(t));
}

/** Whether `pattern` is a valid subscription subject: tokens, `*`, or a final `>`. */
export function isValidSubscribeSubject(pattern: string): boolean {
  const tokens = pattern.split(".");
  return tokens.every(
    (t, i) => TOKEN.test(t) || t === "*" || (t === ">" && i === tokens.length - 1),
  );
}
