/**
 * What a header may be on the wire: a name that is an HTTP token and a value on one line. Checked
 * before publishing, because a bad name or a line break would corrupt the NATS protocol stream.
 *
 * @module
 */

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const LINE_BREAK = /[\r\n]/;

/** `text` with its line breaks turned into spaces, so it can be a header value. */
export function oneLine(text: string): string {
  return text.replace(/[\r\n]+/g, " ");
}

/** Whether `name` is a valid header name and `value` a single-line value. */
export function isValidHeader(name: string, value: string): boolean {
  return TOKEN.test(name) && typeof value === "string" && !LINE_BREAK.test(value);
}

/**
 * Throws a `TypeError` naming the first invalid header.
 * @returns the same record, for chaining
 */
export function assertValidHeaders(headers: Record<string, string>): Record<string, string> {
  for (const name in headers) {
    const value = headers[name] as string;
    if (!isValidHeader(name, value)) {
      throw new TypeError(
        `invalid header ${JSON.stringify(name)}: ${JSON.stringify(value)}; names are tokens (letters, digits, -_.!#$%&'*+^\`|~) and values one line`,
      );
    }
  }
  return headers;
}

/**
 * Header names read case-insensitively (as HTTP and nats.go's canonical form do): a received header
 * spelled otherwise (`nats-msg-id`) is filed under this spelling. The protocol's own headers.
 */
const CANONICAL = [
  "Nats-Msg-Id",
  "Ricochet-Timeout",
  "Ricochet-Attempt",
  "Ricochet-Progress",
  "Ricochet-Reply",
  "Ricochet-Call-Id",
];
const EXACT = new Set(CANONICAL);
const BY_LOWER = new Map(CANONICAL.map((name) => [name.toLowerCase(), name]));

/**
 * The spelling a received header `name` is filed under: the canonical one for the protocol's own
 * headers in any case, else `name` itself. Costs one set lookup for the usual, canonical spelling.
 */
export function canonicalName(name: string): string {
  if (EXACT.has(name)) return name;
  return BY_LOWER.get(name.toLowerCase()) ?? name;
}
