import { describe, expect, it } from "vitest";
import { ReplyLog } from "../../src/dedupe/reply-log.js";
import type { StoredReply } from "../../src/dedupe/types.js";

const reply = (text: string): StoredReply => ({ data: new TextEncoder().encode(text) });

describe("ReplyLog", () => {
  it("keeps a too-large reply as dropped in the last bytes of a budget that is not a multiple of 8", () => {
    // Budgets a few hundred bytes apart leave every kind of remainder once the log is nearly full.
    for (let k = 0; k < 16; k++) {
      const maxBytes = 65_537 + 256 * k;
      const log = new ReplyLog(maxBytes);
      let n = 0;
      while (log.used + 4096 < maxBytes)
        log.append(`id-${n++}`, "f", reply("y".repeat(100)), 1e6, 1e6, 0);
      // Larger than a sixteenth of the budget, and in a new bucket: a new segment in what is left.
      expect(log.append("big", "f", reply("y".repeat(5000)), 2e6, 2e6, 0)).toBeLessThan(100);
      const at = log.find("big", 0);
      expect(at).not.toBe(-1);
      expect(log.reply(at)).toBeUndefined(); // remembered, its reply dropped
      expect(log.find("id-0", 0)).not.toBe(-1);
      expect(log.used).toBeLessThanOrEqual(maxBytes);
    }
  });
});
