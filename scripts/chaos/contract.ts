/**
 * The contract the chaos processes share: one method, `work`, whose handler leaves an effect line
 * outside the responder and answers with the pid of the process that ran it.
 *
 * @module
 */
import { z } from "zod";
import { defineContract, method } from "../../src/index.js";
import { SERVICE } from "./config.js";

/** The chaos service: `chaos.work`. */
export const chaos = defineContract({
  service: SERVICE,
  version: "1.0.0",
  description: "Fault-injection load: each call is one unit of work with an effect",
  methods: {
    work: method({
      request: z.object({ n: z.number().int().nonnegative() }),
      response: z.object({ pid: z.number().int() }),
    }),
  },
});
