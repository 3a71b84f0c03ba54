/**
 * Call tokens (docs/protocol.md, "Call tokens"): the last token of a compact call's reply subject,
 * `rc1~<key>~<id>~<attempt>~<budgetMs>~<windowMs>`. Encoding and parsing round-trip; the parser reads
 * only what matches the rules, never throws, and leaves a plain inbox alone.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { readCallMeta } from "../../src/handle.js";
import {
  type CallToken,
  callTokenPrefix,
  encodeCallToken,
  isTokenSafe,
  MAX_BUDGET_MS,
  MAX_TOKEN_ID_LENGTH,
  parseAttemptHeader,
  parseCallToken,
  parseMillisHeader,
} from "../../src/protocol.js";
import type { TransportMessage } from "../../src/transport/types.js";

const SAFE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const safeId = fc.string({
  unit: fc.constantFrom(...SAFE),
  minLength: 1,
  maxLength: MAX_TOKEN_ID_LENGTH,
});
const millis = fc.integer({ min: 0, max: MAX_BUDGET_MS });
const inbox = fc.constantFrom("_INBOX.abc123", "_INBOX.x.y", "my.replies", "");

/** `reply` with `token` as its last token. */
const under = (prefix: string, token: string) => (prefix === "" ? token : `${prefix}.${token}`);

/** A message as a transport would deliver it: these headers, this reply subject. */
function message(headers: Record<string, string>, reply: string | undefined): TransportMessage {
  return {
    subject: "billing.echo",
    reply,
    data: new Uint8Array(0),
    status: 0,
    header: (name) => (Object.hasOwn(headers, name) ? headers[name] : undefined),
    headers: () => ({ ...headers }),
  };
}

describe("call tokens", () => {
  it("round-trips: what is encoded parses back to the same values, under any inbox", () => {
    fc.assert(
      fc.property(
        inbox,
        safeId,
        safeId,
        fc.integer({ min: 1, max: 2 ** 31 - 1 }),
        millis,
        millis,
        (prefix, key, id, attempt, budgetMs, windowMs) => {
          const token = encodeCallToken(key, id, attempt, budgetMs, windowMs);
          expect(token.startsWith(callTokenPrefix(key, id))).toBe(true);
          // A subject token: no dot, no space, no wildcard.
          expect(token).toMatch(/^[^\s.*>]+$/);
          expect(parseCallToken(under(prefix, token))).toEqual({
            key,
            id,
            attempt,
            budgetMs,
            windowMs,
          });
        },
      ),
      { numRuns: 2000 },
    );
  });

  it("never throws on arbitrary strings, and reads values only by the rules", () => {
    const field = fc.oneof(
      safeId,
      fc.string({ maxLength: 12 }),
      fc.nat().map(String),
      fc.constantFrom("", "0", "01", "1e3", "-1", " 5", "99999999999999999999", "x".repeat(65)),
    );
    const tokenish = fc.oneof(
      fc.string({ maxLength: 80 }),
      fc.string({ unit: "binary", maxLength: 40 }),
      fc
        .tuple(
          fc.constantFrom("rc1~", "rc2~", "rc~", "rc01~", "rc1", "Rc1~", ""),
          fc.array(field, { maxLength: 7 }),
        )
        .map(([marker, fields]) => marker + fields.join("~")),
    );
    fc.assert(
      fc.property(inbox, tokenish, (prefix, token) => {
        const reply = under(prefix, token);
        const got = parseCallToken(reply);
        if (got === undefined) {
          // Only a last token without the marker shape is left alone.
          expect(reply.slice(reply.lastIndexOf(".") + 1)).not.toMatch(/^rc[0-9]+~/);
          return;
        }
        if ("broken" in got) {
          expect(typeof got.broken).toBe("string");
          return;
        }
        const t: CallToken = got;
        expect(isTokenSafe(t.key) && isTokenSafe(t.id)).toBe(true);
        expect(Number.isInteger(t.attempt) && t.attempt >= 1 && t.attempt <= 2 ** 31 - 1).toBe(
          true,
        );
        for (const ms of [t.budgetMs, t.windowMs]) {
          expect(Number.isInteger(ms) && ms >= 0 && ms <= MAX_BUDGET_MS).toBe(true);
        }
        // A valid token is read the same once re-encoded (leading zeros and clamping aside).
        const again = encodeCallToken(t.key, t.id, t.attempt, t.budgetMs, t.windowMs);
        expect(parseCallToken(again)).toEqual(t);
      }),
      { numRuns: 20_000 },
    );
  });

  it("reads each field by the rule of its header: the same value, or broken when the header is invalid", () => {
    const digits = fc.oneof(
      fc.string({ unit: fc.constantFrom("0", "1", "9"), minLength: 0, maxLength: 14 }),
      fc.nat().map(String),
      fc.constantFrom("", "0", "01", "2147483647", "2147483648", "1e3", "-1", " 5", "5 ", "+5"),
    );
    fc.assert(
      fc.property(safeId, safeId, digits, digits, digits, (key, id, a, b, w) => {
        const got = parseCallToken(`_INBOX.x.rc1~${key}~${id}~${a}~${b}~${w}`);
        const attempt = parseAttemptHeader(a);
        const budgetMs = parseMillisHeader(b);
        const windowMs = parseMillisHeader(w);
        if (
          typeof attempt === "number" &&
          typeof budgetMs === "number" &&
          typeof windowMs === "number"
        )
          expect(got).toEqual({ key, id, attempt, budgetMs, windowMs });
        else expect(got).toHaveProperty("broken");
      }),
      { numRuns: 5000 },
    );
  });

  it("leaves plain inboxes alone and names the rule a malformed token breaks", () => {
    // Plain request inboxes (nats.js, nats.go, nats CLI) and look-alikes without the marker.
    for (const reply of [
      "_INBOX.4f8Rk2",
      "_INBOX.abc.17",
      "rc",
      "_INBOX.rc",
      "_INBOX.rc~1",
      "_INBOX.rcx~1",
    ])
      expect(parseCallToken(reply)).toBeUndefined();
    expect(parseCallToken("_INBOX.a.rc1~k~id-1~1~5000~0")).toEqual({
      key: "k",
      id: "id-1",
      attempt: 1,
      budgetMs: 5000,
      windowMs: 0,
    });
    // Same rules as the headers: digits only, clamped; attempts from 1 without leading zeros.
    expect(parseCallToken("_I.rc1~k~i~1~12345678901234567890~99999999999")).toMatchObject({
      budgetMs: MAX_BUDGET_MS,
      windowMs: MAX_BUDGET_MS,
    });
    const broken: Array<[string, RegExp]> = [
      ["_I.rc2~k~i~1~5000~0", /version 2 is not supported/],
      ["_I.rc01~k~i~1~5000~0", /version 01 is not supported/],
      ["_I.rc1~k~i~1~5000", /five fields/],
      ["_I.rc1~k~i~1~5000~0~x", /five fields/],
      ["_I.rc1~k~i~1~5000~0~", /five fields/],
      ["_I.rc1~", /five fields/],
      ["_I.rc1~~i~1~5000~0", /key/],
      ["_I.rc1~k~~1~5000~0", /call id/],
      [`_I.rc1~k~${"x".repeat(65)}~1~5000~0`, /call id/],
      ["_I.rc1~k~a/b~1~5000~0", /call id/],
      ["_I.rc1~k~i~0~5000~0", /attempt/],
      ["_I.rc1~k~i~02~5000~0", /attempt/],
      ["_I.rc1~k~i~2147483648~5000~0", /attempt/],
      ["_I.rc1~k~i~1~1e3~0", /budget/],
      ["_I.rc1~k~i~1~-5~0", /budget/],
      ["_I.rc1~k~i~1~~0", /budget/],
      ["_I.rc1~k~i~1~5000~0x10", /window/],
    ];
    for (const [reply, rule] of broken) {
      const got = parseCallToken(reply);
      expect(got, reply).toMatchObject({ broken: expect.stringMatching(rule) });
    }
  });

  it("accepts 1 to 64 characters of [A-Za-z0-9_-] as token-safe ids", () => {
    expect(isTokenSafe("V1StGXR8_Z5jdHi6B-myT")).toBe(true); // a nanoid
    expect(isTokenSafe("0b6d2f0e-8a1c-4d6f-9a3c-1f2e3d4c5b6a")).toBe(true); // a UUID
    expect(isTokenSafe("x".repeat(64))).toBe(true);
    for (const id of ["", "x".repeat(65), "order.42", "a/b", "a b", "a~b", "naïve", "a*", "a>"])
      expect(isTokenSafe(id), id).toBe(false);
  });

  it("takes a request's metadata from its headers when it has any of them, else from its call token", () => {
    const token = "_INBOX.a.rc1~k~tok-id~3~4000~800";
    expect(readCallMeta(message({}, token), false)).toEqual({
      id: "tok-id",
      attempt: 3,
      timeout: 4000,
      progress: 800,
    });
    // Any one of ricochet's headers and the headers rule alone, as today.
    expect(readCallMeta(message({ "Ricochet-Timeout": "50" }, token), false)).toEqual({
      timeout: 50,
    });
    expect(readCallMeta(message({ "Nats-Msg-Id": "hdr-id" }, token), false)).toEqual({
      id: "hdr-id",
    });
    // Other headers (traceparent, your own) do not count.
    expect(readCallMeta(message({ traceparent: "00-x" }, token), false)).toMatchObject({
      id: "tok-id",
    });
    // A durable command and a plain request read no token.
    expect(readCallMeta(message({}, token), true)).toEqual({});
    expect(readCallMeta(message({}, "_INBOX.a.b"), false)).toEqual({});
    expect(readCallMeta(message({}, undefined), false)).toEqual({});
    expect(readCallMeta(message({}, "_INBOX.a.rc1~k~tok-id~0~4000~800"), false)).toEqual({
      brokenToken: expect.stringMatching(/attempt/),
    });
  });
});
