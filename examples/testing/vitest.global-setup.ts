/**
 * An example to copy: one nats-server for a whole vitest run. In vitest.config.ts:
 *
 *   test: { globalSetup: ["./test/nats.global-setup.ts"] }
 *
 * and in a test: `const url = inject("natsUrl")` (import { inject } from "vitest").
 */
import { startNats } from "ricochet/testing";
import type { TestProject } from "vitest/node";

declare module "vitest" {
  export interface ProvidedContext {
    natsUrl: string;
  }
}

export default async function setup(project: TestProject) {
  const nats = await startNats();
  console.log(nats.description);
  project.provide("natsUrl", nats.url);
  return () => nats.close(); // vitest calls this once every file has run
}
