/**
 * Fuzzing a running responder through a raw NATS connection (no ricochet on the sending side): random
 * bytes and hostile JSON as bodies, random and garbage headers (ricochet's own with bad values, in any
 * case), and messages with no reply subject. The responder must never crash, never run a handler on
 * invalid input, answer INVALID_REQUEST wherever it can reply, keep serving valid calls, and let no body
 * pollute a prototype.
 *
 * Cases: FUZZ_RUNS per property (default 10,000 for the mixed property; `FUZZ_RUNS=100000 npm test --
 * fuzz` for a longer run). The seed is printed; `FUZZ_SEED=<n>` replays a run.
 */
import { type NatsConnection, headers as natsHeaders } from "@nats-io/nats-core";
import { connect } from "@nats-io/transport-node";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createClient } from "../../src/client.js";
import { hasControlCharacter } from "../../src/protocol.js";
import { createResponder, type Responder } from "../../src/responder.js";
import { natsTransport } from "../../src/transport/nats.js";
import { billing } from "../fixtures/billing.js";

const RUNS = Number(process.env.FUZZ_RUNS ?? 10_000);
const SEED = Number(process.env.FUZZ_SEED ?? Date.now() % 2 ** 31);
const encoder = new TextEncoder();
const decoder = new TextDecoder();
const echoRequest = billing.methods.echo.request;

/** What the responder answered: the reply's code, or "OK". */
function codeOf(reply: { data: Uint8Array; headers?: { get(k: string): string } | undefined }) {
  const status = reply.headers?.get("Nats-Service-Error-Code");
  if (!status) return "OK";
  try {
    return (JSON.parse(decoder.decode(reply.data)) as { code: string }).code;
  } catch {
    return `unparseable error ${status}`;
  }
}

/** Header names ricochet reads, in the spellings a peer might use. */
const OWN = ["Nats-Msg-Id", "Ricochet-Timeout", "Ricochet-Attempt", "Ricochet-Progress"];
const spelling = (name: string) => fc.constantFrom(name, name.toLowerCase(), name.toUpperCase());

/** Values for ricochet's headers: good ones and every kind of bad one the issue names. */
const headerValue = fc.oneof(
  fc.constantFrom(
    "",
    " 2000",
    "1e3",
    "0x10",
    "1500.5",
    "-5",
    "NaN",
    "Infinity",
    "12345678901234567890",
    "0",
    "1",
    "02",
    "2000",
    "日本語",
    "é",
    "x".repeat(600),
  ),
  fc.nat().map(String),
  fc.integer().map(String),
  fc.string({ maxLength: 40 }),
  fc.string({ unit: "binary", maxLength: 20 }),
);

/** Token characters nats.js accepts in a header name. */
const headerName = fc.stringMatching(/^[A-Za-z][A-Za-z0-9-]{0,20}$/);

/** Whether a value passes the documented rule for header `name` (the test's own reading of the rule). */
function validFor(name: string, value: string): boolean {
  if (name === "Nats-Msg-Id")
    return (
      value.length >= 1 &&
      value.length <= 512 &&
      !hasControlCharacter(value) &&
      value.trim() === value
    );
  if (name === "Ricochet-Attempt")
    return /^[1-9][0-9]{0,9}$/.test(value) && Number(value) <= 2 ** 31 - 1;
  return /^[0-9]+$/.test(value);
}

/** Hostile JSON values: deep nesting, huge numbers, prototype keys. */
const hostileJson = fc.oneof(
  fc.jsonValue({ depthSize: "medium" }).map((v) => JSON.stringify(v)),
  fc.record({ text: fc.string() }, { requiredKeys: [] }).map((r) => JSON.stringify(r)),
  fc.constantFrom(
    '{"__proto__":{"polluted":"yes"},"text":"a"}',
    '{"constructor":{"prototype":{"polluted":"yes"}},"text":"b"}',
    '{"text":"c","__proto__":{"toString":"x"}}',
    '{"text":1e400}',
    '{"text":"d","n":123456789012345678901234567890}',
    `${"[".repeat(5000)}${"]".repeat(5000)}`,
    `{"text":${"[".repeat(3000)}"deep"${"]".repeat(3000)}}`,
    '{"text":"\\ud800"}',
    "",
    "null",
    '"text"',
  ),
);

describe("fuzzing a responder from a raw NATS connection", () => {
  let responderNc: NatsConnection;
  let raw: NatsConnection;
  let responder: Responder;
  /** Inputs the handler saw that break the request schema: must stay empty. */
  const badInputs: unknown[] = [];
  let runs = 0;
  let cases = 0;

  beforeAll(async () => {
    const servers = inject("natsUrl");
    [responderNc, raw] = await Promise.all([connect({ servers }), connect({ servers })]);
    responder = createResponder(
      billing,
      {
        charge: () => ({ chargeId: "c", balanceCents: 0 }),
        echo: (req) => {
          runs++;
          if (!echoRequest.safeParse(req).success) badInputs.push(req);
          return { text: req.text };
        },
        ping: () => "pong" as const,
      },
      { transport: natsTransport(responderNc), queue: "fuzz", discovery: false },
    );
    await responder.start();
    console.log(`fuzz seed ${SEED}, ${RUNS} runs (FUZZ_SEED / FUZZ_RUNS to change)`);
  });
  afterAll(async () => {
    console.log(`fuzz: ${cases} cases sent, ${runs} handler runs`);
    await responder?.stop();
    await Promise.all([responderNc?.close(), raw?.close()]);
  });

  /** The responder still serves a valid call from a ricochet client. */
  async function stillServes() {
    const client = createClient(billing, { transport: natsTransport(raw) });
    await expect(client.echo({ text: "still here" })).resolves.toEqual({ text: "still here" });
    await client.close();
  }

  it(`answers every request, running the handler only on valid input (${RUNS} cases)`, async () => {
    let n = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          { weight: 2, arbitrary: hostileJson.map((s) => encoder.encode(s)) },
          { weight: 1, arbitrary: fc.uint8Array({ maxLength: 300 }) },
        ),
        fc.array(
          fc.tuple(
            fc.constantFrom(...OWN).chain((o) => spelling(o).map((s) => [o, s] as const)),
            headerValue,
          ),
          {
            maxLength: 4,
          },
        ),
        fc.array(fc.tuple(headerName, fc.string({ maxLength: 30 })), { maxLength: 3 }),
        async (body, own, extra) => {
          cases++;
          const h = natsHeaders();
          const given = new Map<string, string[]>();
          for (const [[canonical, spelled], value] of own) {
            // Values nats.js cannot encode (CR/LF) are not sendable by any client: skip them.
            if (/[\r\n]/.test(value)) continue;
            h.append(spelled, value);
            // nats.js trims header values before sending them (every client we know does).
            given.set(canonical, [...(given.get(canonical) ?? []), value.trim()]);
          }
          for (const [name, value] of extra) {
            if (/[\r\n]/.test(value) || OWN.some((o) => o.toLowerCase() === name.toLowerCase()))
              continue;
            h.append(name, value);
          }
          // Unique ids, so a valid id is never reused with another body (ID_REUSED).
          const ids = given.get("Nats-Msg-Id");
          if (ids?.length === 1 && validFor("Nats-Msg-Id", ids[0] as string)) {
            const unique = `${ids[0]}.${++n}`.slice(-512);
            h.delete("Nats-Msg-Id");
            h.delete("nats-msg-id");
            h.delete("NATS-MSG-ID");
            h.set("Nats-Msg-Id", unique);
            given.set("Nats-Msg-Id", [unique]);
          }
          const reply = await raw.request("billing.echo", body, { timeout: 5000, headers: h });
          const code = codeOf(reply);
          const headersOk = [...given].every(
            ([name, values]) => values.length === 1 && validFor(name, values[0] as string),
          );
          let bodyOk = false;
          try {
            bodyOk = echoRequest.safeParse(JSON.parse(decoder.decode(body))).success;
          } catch {
            bodyOk = false;
          }
          const budget = given.get("Ricochet-Timeout")?.[0];
          if (!headersOk || !bodyOk) expect(code).toBe("INVALID_REQUEST");
          else if (budget !== undefined && Number(budget) === 0) expect(code).toBe("TIMEOUT");
          // A budget of a few ms may run out before the handler starts.
          else if (budget !== undefined && Number(budget) < 100)
            expect(["OK", "TIMEOUT"]).toContain(code);
          else expect(code).toBe("OK");
        },
      ),
      { numRuns: RUNS, seed: SEED },
    );
    expect(badInputs).toEqual([]);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.getOwnPropertyNames(Object.prototype)).not.toContain("polluted");
    await stillServes();
  }, 300_000);

  it(`ignores messages with no reply subject, garbage or not (${Math.ceil(RUNS / 10)} cases)`, async () => {
    const before = runs;
    let valid = 0;
    await fc.assert(
      fc.asyncProperty(hostileJson, async (body) => {
        cases++;
        try {
          if (echoRequest.safeParse(JSON.parse(body)).success) valid++;
        } catch {
          // not JSON: must not run
        }
        raw.publish("billing.echo", encoder.encode(body));
      }),
      { numRuns: Math.ceil(RUNS / 10), seed: SEED },
    );
    await raw.flush();
    // Published without a reply, a valid call still runs (a fire-and-forget command); nothing else does.
    await stillServes();
    await responderNc.flush();
    expect(badInputs).toEqual([]);
    expect(runs - before).toBeLessThanOrEqual(valid + 1);
  }, 120_000);

  it(`reads call tokens in reply subjects by their rules, and never runs a handler on a broken one (${Math.ceil(RUNS / 10)} cases)`, async () => {
    // The test's own reading of docs/protocol.md, "Call tokens".
    const V1 = /^rc1~[A-Za-z0-9_-]{1,64}~[A-Za-z0-9_-]{1,64}~([1-9][0-9]{0,9})~([0-9]+)~([0-9]+)$/;
    const expected = (token: string): "plain" | "broken" | { budget: number } => {
      if (!/^rc[0-9]+~/.test(token)) return "plain";
      const m = V1.exec(token);
      if (m === null || Number(m[1]) > 2 ** 31 - 1) return "broken";
      return { budget: Number(m[2]) };
    };
    const part = fc.oneof(
      fc.stringMatching(/^[A-Za-z0-9_-]{1,70}$/),
      fc.nat().map(String),
      fc.constantFrom("", "0", "01", "1e3", "-1", "2147483648", "99999999999999999999", "é"),
      // Printable ASCII a subject token may hold (no space, dot or wildcard).
      fc.stringMatching(/^[!-)+-\-/-=?-~]{0,12}$/),
    );
    const safe = fc.stringMatching(/^[A-Za-z0-9_-]{1,64}$/);
    const millis = fc.oneof(
      fc.integer({ min: 100, max: 60_000 }).map(String),
      fc.integer({ min: 0, max: 99 }).map(String),
      fc.constantFrom("0", "007", "12345678901234567890"),
    );
    /** Valid version-1 fields, one of them sometimes replaced by anything. */
    const fields = fc
      .tuple(
        safe,
        safe,
        fc.integer({ min: 1, max: 2 ** 31 - 1 }).map(String),
        millis,
        millis,
        fc.integer({ min: 0, max: 9 }),
        part,
      )
      .map(([key, id, attempt, budget, window, i, other]) => {
        const f = [key, id, attempt, budget, window];
        if (i < f.length) f[i] = other;
        return f;
      });
    const token = fc.oneof(
      fc
        .tuple(fc.constantFrom("rc1~", "rc1~", "rc1~", "rc2~", "rc~", "rc01~", "rc1", "x"), fields)
        .map(([marker, f]) => marker + f.join("~")),
      fc
        .tuple(fc.constantFrom("rc1~", "rc2~"), fc.array(part, { minLength: 3, maxLength: 7 }))
        .map(([marker, parts]) => marker + parts.join("~")),
      fc.stringMatching(/^[!-)+-\-/-=?-~]{1,40}$/),
    );
    const inbox = `_INBOX.fuzz${SEED}`;
    const waiting = new Map<
      string,
      (m: { data: Uint8Array; headers?: { get(k: string): string } }) => void
    >();
    const sub = raw.subscribe(`${inbox}.>`, {
      callback: (_err, m) => {
        // A progress message (a small window) is not the answer.
        if (m.data.length === 0 && m.headers?.get("Ricochet-Progress")) return;
        waiting.get(m.subject.split(".")[2] as string)?.(m);
      },
    });
    await raw.flush();
    const before = runs;
    let mayRun = 0;
    let n = 0;
    try {
      await fc.assert(
        fc.asyncProperty(token, async (t) => {
          cases++;
          const slot = `c${++n}`;
          const want = expected(t);
          if (want !== "broken") mayRun++;
          const answer = new Promise<string>((resolve, reject) => {
            const timer = setTimeout(() => reject(new Error(`no answer to token ${t}`)), 5000);
            waiting.set(slot, (m) => {
              clearTimeout(timer);
              waiting.delete(slot);
              resolve(codeOf(m));
            });
          });
          raw.publish("billing.echo", encoder.encode('{"text":"t"}'), {
            reply: `${inbox}.${slot}.${t}`,
          });
          const code = await answer;
          if (want === "broken") expect(code).toBe("INVALID_REQUEST");
          else if (want === "plain") expect(code).toBe("OK");
          else if (want.budget === 0) expect(code).toBe("TIMEOUT");
          else if (want.budget < 100) expect(["OK", "TIMEOUT"]).toContain(code);
          else expect(code).toBe("OK");
        }),
        { numRuns: Math.ceil(RUNS / 10), seed: SEED },
      );
    } finally {
      sub.unsubscribe();
    }
    expect(runs - before).toBeLessThanOrEqual(mayRun);
    expect(badInputs).toEqual([]);
    await stillServes();
  }, 120_000);

  it("applies the header rules of docs/protocol.md", async () => {
    const send = async (pairs: [string, string][], body = '{"text":"r"}') => {
      const h = natsHeaders();
      for (const [k, v] of pairs) h.append(k, v);
      return codeOf(
        await raw.request("billing.echo", encoder.encode(body), { headers: h, timeout: 5000 }),
      );
    };
    for (const bad of ["20 00", "1e3", "0x10", "1500.5", "-5", ""]) {
      expect(await send([["Ricochet-Timeout", bad]])).toBe("INVALID_REQUEST");
    }
    expect(await send([["Ricochet-Timeout", "12345678901234567890"]])).toBe("OK"); // clamped
    expect(await send([["Ricochet-Attempt", "0"]])).toBe("INVALID_REQUEST");
    expect(await send([["Nats-Msg-Id", ""]])).toBe("INVALID_REQUEST");
    expect(await send([["Nats-Msg-Id", "x".repeat(513)]])).toBe("INVALID_REQUEST");
    expect(await send([["Nats-Msg-Id", "naïve 1"]])).toBe("OK"); // spaces and non-ASCII are fine
    expect(await send([["Nats-Msg-Id", "tab\there"]])).toBe("INVALID_REQUEST");
    // Names are matched case-insensitively: a lower-case id deduplicates like the canonical one.
    const before = runs;
    expect(await send([["nats-msg-id", "lower-1"]])).toBe("OK");
    expect(await send([["Nats-Msg-Id", "lower-1"]])).toBe("OK");
    expect(runs - before).toBe(1);
    // The same header under two spellings is refused, not guessed.
    expect(
      await send([
        ["Nats-Msg-Id", "twice-1"],
        ["nats-msg-id", "twice-2"],
      ]),
    ).toBe("INVALID_REQUEST");
  });
});
