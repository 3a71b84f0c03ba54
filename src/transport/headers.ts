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
