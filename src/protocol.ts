/**
 * The wire format in one place: subjects, header names, the JSON body codec and error replies.
 * docs/protocol.md describes the same format for peers in other languages; keep the two in step.
 *
 * @module
 */
import type { RpcError } from "./errors.js";
import { oneLine } from "./transport/headers.js";

/** Carries the call id, which is also the idempotency key (the NATS convention for a message's dedupe id). */
export const HEADER_CALL_ID = "Nats-Msg-Id";
/** The attempt number, `2` and up. Absent on the first attempt. */
export const HEADER_ATTEMPT = "Ricochet-Attempt";
/** The caller's remaining time budget in whole milliseconds when the attempt was sent. */
export const HEADER_TIMEOUT = "Ricochet-Timeout";
/**
 * On a request: the caller's attempt window in whole milliseconds, and that it understands progress
 * messages. On a message to a reply subject: a progress message (empty body) from the instance named
 * in the value, which still holds the call.
 */
export const HEADER_PROGRESS = "Ricochet-Progress";
/** NATS micro: the error message of an error reply. */
export const HEADER_ERROR = "Nats-Service-Error";
/** NATS micro: the numeric status of an error reply. */
export const HEADER_ERROR_CODE = "Nats-Service-Error-Code";

/**
 * The largest time budget honoured, in ms (2^31-1, about 24.8 days: the longest delay a Node timer
 * takes). Larger `Ricochet-Timeout` values are clamped to it.
 */
export const MAX_BUDGET_MS = 2 ** 31 - 1;

/** The NATS status a server sends on the reply subject when nobody is subscribed to a request's subject. */
export const STATUS_NO_RESPONDERS = 503;

/** The subject a method is served on: `<service>.<method>`. */
export function methodSubject(service: string, method: string): string {
  return `${service}.${method}`;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const EMPTY = new Uint8Array(0);

/** Encodes a value as a JSON body. `undefined` becomes an empty body. */
export function encodeBody(value: unknown): Uint8Array {
  const json = JSON.stringify(value);
  return json === undefined ? EMPTY : encoder.encode(json);
}

/** Decodes a JSON body. An empty body is `undefined`. Throws `SyntaxError` on malformed JSON. */
export function decodeBody(data: Uint8Array): unknown {
  return data.length === 0 ? undefined : JSON.parse(decoder.decode(data));
}

/** The headers and body of an error reply. */
export interface EncodedError {
  headers: Record<string, string>;
  data: Uint8Array;
}

/** Encodes an error reply: NATS micro headers plus a `{ code, message, details }` JSON body. */
export function encodeError(err: RpcError): EncodedError {
  return {
    // Header values are single lines; a newline would end the header block early.
    headers: { [HEADER_ERROR]: oneLine(err.message), [HEADER_ERROR_CODE]: String(err.status) },
    data: encodeBody(err.toJSON()),
  };
}

/** Reads the fields of an error reply's body, tolerating peers that send only the micro headers. */
export function decodeError(
  status: number,
  headerMessage: string | undefined,
  data: Uint8Array,
): { code: string; message: string; details: unknown; status: number } {
  let body: unknown;
  try {
    body = decodeBody(data);
  } catch {
    // A peer (e.g. a plain NATS micro service) may send a non-JSON body; the headers still tell the story.
    body = undefined;
  }
  const fields = typeof body === "object" && body !== null ? (body as Record<string, unknown>) : {};
  const code = typeof fields.code === "string" ? fields.code : codeForStatus(status);
  const message =
    typeof fields.message === "string" ? fields.message : (headerMessage ?? `error ${status}`);
  return { code, message, details: fields.details, status };
}

/** Maps a bare NATS micro status (a non-ricochet peer's error) to the closest built-in code. */
function codeForStatus(status: number): string {
  if (status === 400) return "INVALID_REQUEST";
  if (status === 409) return "ID_REUSED";
  if (status === 413) return "PAYLOAD_TOO_LARGE";
  if (status === 429) return "OVERLOADED";
  if (status === 503) return "UNAVAILABLE";
  if (status === 504) return "TIMEOUT";
  return "INTERNAL";
}

/** What a header that breaks its rule parses to (as opposed to `undefined`, for an absent one). */
export const INVALID = Symbol("invalid header");

/**
 * Parses a duration header (`Ricochet-Timeout`, `Ricochet-Progress`): whole milliseconds written as
 * ASCII digits only (no sign, space, decimal point, exponent or `0x`), clamped to
 * {@link MAX_BUDGET_MS}. `undefined` when absent; {@link INVALID} when it breaks the rule.
 */
export function parseMillisHeader(value: string | undefined): number | undefined | typeof INVALID {
  if (value === undefined) return undefined;
  if (!/^[0-9]+$/.test(value)) return INVALID;
  // More than 10 digits is above 2^31-1 whatever they are: clamp without parsing a huge number.
  return value.length > 10 ? MAX_BUDGET_MS : Math.min(Number(value), MAX_BUDGET_MS);
}

/**
 * Parses `Ricochet-Attempt`: an integer from 1 to 2^31-1 in ASCII digits, without leading zeros.
 * `undefined` when absent; {@link INVALID} when it breaks the rule.
 */
export function parseAttemptHeader(value: string | undefined): number | undefined | typeof INVALID {
  if (value === undefined) return undefined;
  if (!/^[1-9][0-9]{0,9}$/.test(value)) return INVALID;
  const n = Number(value);
  return n <= MAX_BUDGET_MS ? n : INVALID;
}

/** The longest call id accepted, in characters. */
export const MAX_CALL_ID_LENGTH = 512;

/** Whether the character code is one JavaScript's `trim()` removes (as NATS clients trim values). */
function isSpace(c: number): boolean {
  return (
    c === 0x20 ||
    (c >= 0x09 && c <= 0x0d) ||
    c === 0xa0 ||
    c === 0x1680 ||
    (c >= 0x2000 && c <= 0x200a) ||
    c === 0x2028 ||
    c === 0x2029 ||
    c === 0x202f ||
    c === 0x205f ||
    c === 0x3000 ||
    c === 0xfeff
  );
}

/** Whether `s` holds a control character (C0, U+0000 to U+001F, or DEL). */
export function hasControlCharacter(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return true;
  }
  return false;
}

/**
 * Whether `id` is a valid call id (`Nats-Msg-Id`): 1 to {@link MAX_CALL_ID_LENGTH} characters, none of
 * them a control character (C0 or DEL). Spaces and non-ASCII letters are allowed; a header value
 * cannot start or end with a space (NATS clients trim it), so neither can an id.
 */
export function isValidCallId(id: string): boolean {
  return (
    id.length > 0 &&
    id.length <= MAX_CALL_ID_LENGTH &&
    !hasControlCharacter(id) &&
    !isSpace(id.charCodeAt(0)) &&
    !isSpace(id.charCodeAt(id.length - 1))
  );
}
