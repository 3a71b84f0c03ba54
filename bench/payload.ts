/** The request and response bodies every implementation sends, at the sizes the bench measures. */
import { z } from "zod";

/** A JSON request of about `bytes` bytes once encoded. */
export function makeRequest(bytes: number) {
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
