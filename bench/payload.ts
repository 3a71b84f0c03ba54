/**
 * The request and response bodies every implementation sends, as payload sets: each a request maker,
 * a handler computing the response from the request, and the zod schemas ricochet validates both with.
 *
 * - scalar: four flat fields, the note padded to the size asked (200 B by default; 8 KiB and 256 KiB in
 *   the big-body columns), the response as large as the request.
 * - nested: an order of about 200 B of JSON (an object in an object, an array of 20 integers); the
 *   response is its sum and count.
 * - large: an order of about 2 KiB of JSON (27 line items, each with a tag array); the response is a
 *   summary and one subtotal per line (about 1.2 KiB).
 */
import { z } from "zod";

export const PAYLOADS = ["scalar", "nested", "large"] as const;
export type PayloadName = (typeof PAYLOADS)[number];

/** One payload set, with its types erased so every implementation can take any set. */
export interface PayloadSet {
  readonly name: PayloadName;
  /** How the report names it. */
  readonly label: string;
  /** A request; `bytes` pads it to that size where the set supports it (scalar only). */
  makeRequest(bytes?: number): unknown;
  /** The handler: computes the response from a (decoded) request. */
  respond(req: unknown): unknown;
  readonly requestSchema: z.ZodType;
  readonly responseSchema: z.ZodType;
  /** Whether `makeRequest(bytes)` honours `bytes` (for the 8 KiB and 256 KiB columns). */
  readonly sizable: boolean;
}

function payloadSet<Req, Res>(set: {
  name: PayloadName;
  label: string;
  makeRequest(bytes?: number): Req;
  respond(req: Req): Res;
  requestSchema: z.ZodType<Req>;
  responseSchema: z.ZodType<Res>;
  sizable: boolean;
}): PayloadSet {
  return set as unknown as PayloadSet;
}

// --- scalar ----------------------------------------------------------------------------------------

/** A JSON request of about `bytes` bytes once encoded. */
export function makeRequest(bytes = 200) {
  const skeleton = { accountId: "acct-000123", amountCents: 4200, currency: "EUR", note: "" };
  const pad = Math.max(0, bytes - JSON.stringify(skeleton).length);
  return { ...skeleton, note: "x".repeat(pad) };
}

export type BenchRequest = ReturnType<typeof makeRequest>;

/** The response a handler returns for a request: the same size, so both directions carry the payload. */
export function makeResponse(req: BenchRequest) {
  return { chargeId: "ch_000123", balanceCents: 95_800, currency: req.currency, note: req.note };
}

export const requestSchema = z.object({
  accountId: z.string(),
  amountCents: z.number().int().positive(),
  currency: z.string().length(3),
  note: z.string(),
});
export const responseSchema = z.object({
  chargeId: z.string(),
  balanceCents: z.number().int(),
  currency: z.string(),
  note: z.string(),
});

// --- nested (~200 B) -------------------------------------------------------------------------------

const tier = z.enum(["gold", "silver", "bronze", "standard"]);

export const nestedRequestSchema = z.object({
  orderId: z.string().min(1),
  customer: z.object({ id: z.string().min(1), tier }),
  note: z.string().max(500),
  items: z.array(z.number().int().nonnegative()).max(100),
});
export const nestedResponseSchema = z.object({
  orderId: z.string(),
  sum: z.number().int(),
  count: z.number().int(),
});
type NestedRequest = z.infer<typeof nestedRequestSchema>;

export function makeNestedRequest(): NestedRequest {
  return {
    orderId: "ord-2026-000123456",
    customer: { id: "cus-000042", tier: "gold" },
    note: "leave at the back door",
    items: Array.from({ length: 20 }, (_, i) => 100 + ((i * 37) % 900)),
  };
}

export function respondNested(req: NestedRequest): z.infer<typeof nestedResponseSchema> {
  let sum = 0;
  for (const n of req.items) sum += n;
  return { orderId: req.orderId, sum, count: req.items.length };
}

// --- large (~2 KiB) --------------------------------------------------------------------------------

export const largeRequestSchema = z.object({
  orderId: z.string().min(1),
  customer: z.object({ id: z.string().min(1), tier }),
  currency: z.string().length(3),
  lines: z
    .array(
      z.object({
        sku: z.string().min(1),
        qty: z.number().int().positive(),
        priceCents: z.number().int().nonnegative(),
        tags: z.array(z.string()).max(10),
      }),
    )
    .max(200),
});
export const largeResponseSchema = z.object({
  orderId: z.string(),
  currency: z.string(),
  lineCount: z.number().int(),
  totalCents: z.number().int(),
  distinctTags: z.number().int(),
  lines: z.array(z.object({ sku: z.string(), subtotalCents: z.number().int() })),
});
type LargeRequest = z.infer<typeof largeRequestSchema>;

const TAGS = ["fragile", "gift", "sale", "eco", "bulk", "cold"];

export function makeLargeRequest(): LargeRequest {
  return {
    orderId: "ord-2026-000123456",
    customer: { id: "cus-000042", tier: "silver" },
    currency: "EUR",
    lines: Array.from({ length: 27 }, (_, i) => ({
      sku: `SKU-${String(10_000 + i * 7).padStart(6, "0")}`,
      qty: 1 + (i % 5),
      priceCents: 199 + ((i * 613) % 9800),
      tags: [TAGS[i % TAGS.length] as string, TAGS[(i * 5 + 1) % TAGS.length] as string],
    })),
  };
}

export function respondLarge(req: LargeRequest): z.infer<typeof largeResponseSchema> {
  let totalCents = 0;
  const tags = new Set<string>();
  const lines = req.lines.map((l) => {
    const subtotalCents = l.qty * l.priceCents;
    totalCents += subtotalCents;
    for (const t of l.tags) tags.add(t);
    return { sku: l.sku, subtotalCents };
  });
  return {
    orderId: req.orderId,
    currency: req.currency,
    lineCount: req.lines.length,
    totalCents,
    distinctTags: tags.size,
    lines,
  };
}

// --- the sets --------------------------------------------------------------------------------------

export const payloadSets: Record<PayloadName, PayloadSet> = {
  scalar: payloadSet({
    name: "scalar",
    label: "scalar: 4 flat fields, 200 B request, response as large",
    makeRequest,
    respond: makeResponse,
    requestSchema,
    responseSchema,
    sizable: true,
  }),
  nested: payloadSet({
    name: "nested",
    label:
      "nested ~200 B: order with customer object and 20 integers; response {orderId, sum, count}",
    makeRequest: makeNestedRequest,
    respond: respondNested,
    requestSchema: nestedRequestSchema,
    responseSchema: nestedResponseSchema,
    sizable: false,
  }),
  large: payloadSet({
    name: "large",
    label:
      "~2 KiB: order with 27 line items {sku, qty, priceCents, tags[]}; response summary + 27 subtotals",
    makeRequest: makeLargeRequest,
    respond: respondLarge,
    requestSchema: largeRequestSchema,
    responseSchema: largeResponseSchema,
    sizable: false,
  }),
};

export function getPayloadSet(name: string): PayloadSet {
  const set = payloadSets[name as PayloadName];
  if (!set) throw new Error(`unknown payload set "${name}" (one of ${PAYLOADS.join(", ")})`);
  return set;
}
